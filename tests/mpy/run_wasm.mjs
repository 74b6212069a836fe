// Run Python code under the MicroPython WebAssembly port (npm, pinned in package.json).
//
// usage: node tests/mpy/run_wasm.mjs ROOT SCRIPT.py [ARG ...]
// Copies ROOT/firmware and ROOT/tests/firmware (*.py, and the *.json/*.csv data such as
// tests/firmware/vectors/) into the port's in-memory filesystem under /proj (nothing outside
// ROOT is read), puts /proj on sys.path, sets the global MP_ARGV (this port has no writable sys.argv) and runs SCRIPT.py.
// Exit code: 0 if the script ran to the end (or raised SystemExit(0)), 1 otherwise.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";

const [root, script, ...args] = process.argv.slice(2);
if (!root || !script) {
  console.error("usage: node run_wasm.mjs ROOT SCRIPT.py [ARG ...]");
  process.exit(2);
}
const heapMb = parseInt(process.env.BIJLI_MP_HEAP_MB || "16", 10);
const mp = await loadMicroPython({
  heapsize: heapMb * 1024 * 1024,
  pystack: 16384,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copyTree(src, dst) {
  mp.FS.mkdirTree(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, entry.name);
    const d = dst + "/" + entry.name;
    if (entry.isDirectory()) {
      if (entry.name === "__pycache__") continue;
      copyTree(s, d);
    } else if (entry.name.endsWith(".py") || entry.name.endsWith(".json") || entry.name.endsWith(".csv")) {
      mp.FS.writeFile(d, fs.readFileSync(s));
    }
  }
}
copyTree(path.join(root, "firmware"), "/proj/firmware");
copyTree(path.join(root, "tests", "firmware"), "/proj/tests/firmware");
mp.FS.writeFile("/proj/tests/__init__.py", "");

const code = fs.readFileSync(script, "utf8");
const argv = JSON.stringify([script, ...args]);
let status = 0;
try {
  mp.runPython(`import sys\nsys.path.insert(0, '/proj')\nMP_ARGV = ${argv}\n`);
  mp.runPython(code);
} catch (error) {
  if (error.name === "PythonError" && error.type === "SystemExit") {
    status = /SystemExit:?\s*0?\s*$/.test(error.message.trim()) ? 0 : 1;
    if (status) console.error(error.message);
  } else {
    console.error(error.message || String(error));
    status = 1;
  }
}
process.exit(status);
