// Peak heap of one simulated meter day under the MicroPython WebAssembly port.
// usage: node bench/mpy_heap_day.mjs [ROOT] [CHUNK_S]   (after `npm ci`)
// The port only collects garbage between runPython() calls, so the day runs in chunks
// (CHUNK_S simulated seconds each) with gc.collect() in a separate call after each chunk.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";
const root = process.argv[2] || ".";
const chunk = parseInt(process.argv[3] || "60", 10);
const mp = await loadMicroPython({ heapsize: 16 * 1024 * 1024, pystack: 16384,
  stdout: (l) => process.stdout.write(l + "\n"), stderr: (l) => process.stderr.write(l + "\n") });
function copyTree(src, dst) {
  mp.FS.mkdirTree(dst);
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name), d = dst + "/" + e.name;
    if (e.isDirectory()) { if (e.name !== "__pycache__") copyTree(s, d); }
    else if (e.name.endsWith(".py")) mp.FS.writeFile(d, fs.readFileSync(s));
  }
}
copyTree(path.join(root, "firmware"), "/proj/firmware");
mp.runPython(`
import sys, gc, micropython
sys.path.insert(0, '/proj')
gc.collect()`);
mp.runPython(`base = gc.mem_alloc()
from firmware.hal.sim import SimClock, SimHal, HouseholdLoad
from firmware.hal.nvm import MemNVM
from firmware.config import Config
from firmware.meter import Meter
from firmware import token_codec as tc`);
mp.runPython(`gc.collect(); imported = gc.mem_alloc() - base`);
mp.runPython(`T0 = 1767225600 - 19800
hal = SimHal(SimClock(T0), HouseholdLoad(19800, 100, 10, 3), MemNVM(65536))
KEY = bytes(range(16))
m = Meter(hal, Config(meter_id="HEAP1"), keys={0: KEY})
m.provision_credit(10000)
m.enter_token(tc.TokenCipher(KEY, "HEAP1").encrypt(0, tc.encode_value(0, 100), 1, 0, 0))
t = T0
live = 0
raw = 0`);
mp.runPython(`gc.collect(); built = gc.mem_alloc() - base`);
const steps = Math.ceil(86400 / chunk);
for (let k = 0; k < steps; k++) {
  mp.runPython(`t += ${chunk}
m.advance_to(t)
a = gc.mem_alloc() - base
if a > raw: raw = a`);
  mp.runPython(`gc.collect()
a = gc.mem_alloc() - base
if a > live: live = a`);
}
mp.runPython(`print("chunk %d s: imports %d B, meter built (+1 token) %d B, live peak %d B, peak incl. one chunk's garbage %d B" % (${chunk}, imported, built, live, raw))
print("day: %d Wh, balance %d paise, %d interval entries, %d events" % (m.metrology.import_reg.wh, m.account.balance, len(m.iprofile), m.events.next_number - 1))
micropython.mem_info()`);
