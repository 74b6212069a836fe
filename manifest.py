# MicroPython manifest for the firmware package (micropython-lib style): every firmware module,
# all HALs included. The project's own images freeze it (hil/mpy_build.py: the unix32 and QEMU
# board-fit targets, which run the PC HALs and the firmware tests).
#
# For a board, freeze only what it imports: `bijli board build DIR --freeze [--hal board]`
# writes DIR/manifest.py (the board entry's import closure: no hal/sim.py, no PC HALs); mip
# installs the same closure from firmware/package.json. Frozen modules keep their bytecode and
# strings in flash, not in the GC heap.
metadata(description="bijli prepaid electricity meter firmware", version="0.1.0")

package("firmware")
