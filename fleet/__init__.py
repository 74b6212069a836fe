"""An emulated fleet of prepaid meters at utility scale in one process (issue 13).

- `fleet.scheduler`  the fleet clock (speed, jumps) and the one timer heap of every meter;
- `fleet.meter`      a fleet meter: the emulator's firmware Meter on a sparse NVM, the fleet's
                     clock and the shared COSEM tables, materialised on first touch;
- `fleet.population` a seeded, reproducible population (load diversity, balances, feeders,
                     contacts) and the payment behaviour model;
- `fleet.core`       `Fleet`: the meters of one process (or shard), sessions, pushes, faults;
- `fleet.state`      `--state DIR`: the fleet persisted compactly, restarted from it;
- `fleet.net`, `fleet.concentrator`, `fleet.link_faults`, `fleet.wire`: the network side
  (per-meter loopback addresses, the data concentrator, link faults).
See docs/fleet.md.
"""
