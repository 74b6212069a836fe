"""Metrology: energy registers, instantaneous values and block demand (integers only).

Pure logic: no HAL, no I/O. The meter feeds it what the HAL's measurement source reports:

- pulses from a metering chip (`meter_constant` imp/kWh): `add_pulses(n, now, dt_ms)`;
- voltage/current samples: `add_sample(v_mv, i_ma, pf_permille, dt_ms, now)` (pf signed:
  negative = export), or a signed active power: `add_power(power_w, dt_ms, now)`.

Units: energy in Wh plus a sub-Wh accumulator in mWh (`EnergyRegister`), voltage in mV,
current in mA, power in W (signed: + import, - export), power factor in permille,
demand in W, time in integer Unix seconds UTC (`now`), sample durations in ms.
Every division carries its remainder to the next call, so no energy is ever rounded away:
the sum of many small samples equals one big sample of the same total, to the mWh and below.

Events: this module emits none; callers read `snapshot()` and the demand attributes.
Persistence: `dump() -> bytes` / `load(bytes)` (leading version byte, fixed struct layout).
"""
import struct

from firmware.storage import dumped
from firmware.timeutil import IST_OFFSET_S
from firmware.validate import check_int as _check_int

MWH_PER_KWH = 1000000
# add_sample(): mV * mA * permille * ms = 1e-3 V * 1e-3 A * 1e-3 * 1e-3 s = 1e-12 J;
# 1 mWh = 3.6 J = 3.6e12 such units.
SAMPLE_UNITS_PER_MWH = 3600000000000
# add_power(): W * ms = 1e-3 J; 1 mWh = 3600 of them; scaled into sample units by 1e9.
POWER_SCALE = 1000000000

_REG_FMT = "<BQH"  # version, Wh, mWh
_REG_VERSION = 1


class EnergyRegister:
    """A cumulative energy register: integer Wh plus a sub-Wh accumulator in mWh (0..999).

    It only counts up: `add_mwh()` rejects negative amounts, so it never goes backwards.
    """

    __slots__ = ("wh", "mwh")

    def __init__(self, wh=0, mwh=0):
        _check_int("wh", wh, 0)
        _check_int("mwh", mwh, 0)
        self.wh = wh + mwh // 1000
        self.mwh = mwh % 1000

    def add_mwh(self, mwh):
        """Add `mwh` (int >= 0) milli-watt-hours; return the whole Wh the register advanced."""
        _check_int("mwh", mwh, 0)
        total = self.mwh + mwh
        whole = total // 1000
        self.wh += whole
        self.mwh = total - whole * 1000
        return whole

    def total_mwh(self):
        """The register's value in mWh."""
        return self.wh * 1000 + self.mwh

    def dump(self):
        """Persistent form: version byte, Wh (u64), mWh (u16)."""
        return struct.pack(_REG_FMT, _REG_VERSION, self.wh, self.mwh)

    def load(self, data):
        """Restore from `dump()` output; ValueError (state untouched) on bad data."""
        if len(data) != struct.calcsize(_REG_FMT):
            raise ValueError("energy register record: bad length %d" % len(data))
        ver, wh, mwh = struct.unpack(_REG_FMT, data)
        if ver != _REG_VERSION:
            raise ValueError("energy register record: unknown version %d" % ver)
        if mwh > 999:
            raise ValueError("energy register record: mWh out of range %d" % mwh)
        self.wh = wh
        self.mwh = mwh

    def __repr__(self):
        return "EnergyRegister(%d.%03d Wh)" % (self.wh, self.mwh)


# version, imp reg wh, mwh, exp wh, mwh, pulse rem imp, pulse rem exp, sample rem imp, sample rem exp,
# block index, block mWh, last demand W, max demand W, max demand time
_MET_FMT = "<BQHQHIIQQiQIII"
_MET_VERSION = 1
_MET_SIZE = struct.calcsize(_MET_FMT)


class Metrology:
    """Energy registers (import/export), instantaneous values and block demand.

    meter_constant: pulses per kWh of the pulse source (e.g. 1600); demand_period_s: demand
    block length (default 900 s = 15 min), blocks aligned to local time (tz_offset_s).
    """

    def __init__(self, meter_constant=1600, demand_period_s=900, tz_offset_s=IST_OFFSET_S):
        _check_int("meter_constant", meter_constant, 1, 1000000)
        _check_int("demand_period_s", demand_period_s, 60, 86400)
        if 86400 % demand_period_s:
            raise ValueError("demand_period_s must divide a day, got %d" % demand_period_s)
        self.meter_constant = meter_constant
        self.demand_period_s = demand_period_s
        self.tz_offset_s = tz_offset_s
        self.import_reg = EnergyRegister()
        self.export_reg = EnergyRegister()
        self._pulse_rem = [0, 0]  # in 1/meter_constant mWh
        # the sample remainder (in 1/SAMPLE_UNITS_PER_MWH mWh, up to 3.6e12: a big int on a
        # 32-bit port) kept as q * POWER_SCALE + r, both small ints: add_power() then works on
        # q alone and allocates nothing (see _sample_rem for the whole value)
        self._rem_q = [0, 0]
        self._rem_r = [0, 0]
        # instantaneous values (not persisted)
        self.voltage_mv = 0
        self.current_ma = 0
        self.power_w = 0
        self.pf_permille = 1000
        # demand
        self._block = -1  # index of the open demand block (-1: none yet)
        self._block_start = 0  # Unix times the open block starts and ends (kept with _block)
        self._block_end = 0
        self._block_mwh = 0  # import energy in the open block
        self.last_demand_w = 0  # demand of the last closed block
        self.max_demand_w = 0
        self.max_demand_time = 0  # end time of the block that set max_demand_w (0: none)

    # --- feeding -------------------------------------------------------------------------
    def add_pulses(self, n, now, dt_ms=0, export=False):
        """Count `n` pulses seen over the last `dt_ms` ms (0: unknown); return mWh added.

        Each pulse is 1/meter_constant kWh; the fraction of a mWh is carried. With dt_ms > 0
        the instantaneous power is updated from the pulse rate.
        """
        _check_int("n", n, 0)
        _check_int("dt_ms", dt_ms, 0)
        side = 1 if export else 0
        num = self._pulse_rem[side] + n * MWH_PER_KWH
        mwh = num // self.meter_constant
        self._pulse_rem[side] = num - mwh * self.meter_constant
        if dt_ms:
            # W = n * 3.6e9 / (constant * dt_ms)
            p = n * 3600000000 // (self.meter_constant * dt_ms)
            self.power_w = -p if export else p
        self._credit(side, mwh, now)
        return mwh

    def add_sample(self, v_mv, i_ma, pf_permille, dt_ms, now):
        """One V/I sample held for `dt_ms` ms: mV, mA (>= 0), signed power factor in permille.

        Returns the signed mWh added (negative = export). Updates instantaneous values.
        """
        _check_int("v_mv", v_mv, 0)
        _check_int("i_ma", i_ma, 0)
        _check_int("pf_permille", pf_permille, -1000, 1000)
        _check_int("dt_ms", dt_ms, 0)
        self.voltage_mv = v_mv
        self.current_ma = i_ma
        self.pf_permille = pf_permille
        p_units = v_mv * i_ma * pf_permille  # 1e-9 W
        self.power_w = p_units // 1000000000 if p_units >= 0 else -((-p_units) // 1000000000)
        return self._add_units(p_units * dt_ms, now)

    def add_power(self, power_w, dt_ms, now):
        """Signed active power (W, + import / - export) held for `dt_ms` ms; returns signed mWh."""
        _check_int("power_w", power_w)
        _check_int("dt_ms", dt_ms, 0)
        self.power_w = power_w
        # power_w * dt_ms * POWER_SCALE sample units added to q * POWER_SCALE + r leave r as
        # it is: the mWh and the new q follow from q + W*ms (3600 W*ms = 1 mWh), in small ints
        wms = power_w * dt_ms
        side = 0 if wms >= 0 else 1
        a = self._rem_q[side] + (wms if wms >= 0 else -wms)
        mwh = a // 3600
        self._rem_q[side] = a - mwh * 3600
        self._credit(side, mwh, now)
        return mwh if side == 0 else -mwh

    def set_instant(self, v_mv=None, i_ma=None, power_w=None):
        """Set instantaneous readings directly (e.g. from a metering chip's registers)."""
        if v_mv is not None:
            self.voltage_mv = _check_int("v_mv", v_mv, 0)
        if i_ma is not None:
            self.current_ma = _check_int("i_ma", i_ma, 0)
        if power_w is not None:
            self.power_w = _check_int("power_w", power_w)

    def _add_units(self, units, now):
        side = 0 if units >= 0 else 1
        num = self._sample_rem(side) + (units if units >= 0 else -units)
        mwh = num // SAMPLE_UNITS_PER_MWH
        self._set_sample_rem(side, num - mwh * SAMPLE_UNITS_PER_MWH)
        self._credit(side, mwh, now)
        return mwh if side == 0 else -mwh

    def _sample_rem(self, side):
        return self._rem_q[side] * POWER_SCALE + self._rem_r[side]

    def _set_sample_rem(self, side, rem):
        q = rem // POWER_SCALE
        self._rem_q[side] = q
        self._rem_r[side] = rem - q * POWER_SCALE

    def _credit(self, side, mwh, now):
        # energy measured up to `now` belongs to the block holding now - 1 (interval end)
        if self._block < 0 or now > self._block_end:  # else now - 1 is in the open block
            self.tick(now - 1)
        if side == 0:
            self.import_reg.add_mwh(mwh)
            self._block_mwh += mwh
        else:
            self.export_reg.add_mwh(mwh)
        self.tick(now)

    # --- demand --------------------------------------------------------------------------
    def _block_of(self, t):
        return (t + self.tz_offset_s) // self.demand_period_s

    def tick(self, now):
        """Close the demand block if `now` is past its end (call at least once per block).

        A clock that goes backwards never reopens a closed block: energy then accrues to the
        open block until time passes its end again.
        """
        if self._block >= 0 and now < self._block_end:
            return  # still in the open block (a compare: no big-int arithmetic per call)
        b = self._block_of(now)
        if self._block < 0:
            self._open_block(b)
            return
        if b <= self._block:
            return
        demand = self._block_mwh * 3600 // (self.demand_period_s * 1000)
        self.last_demand_w = demand
        if demand > self.max_demand_w:
            self.max_demand_w = demand
            self.max_demand_time = (self._block + 1) * self.demand_period_s - self.tz_offset_s
        if b > self._block + 1:
            self.last_demand_w = 0  # whole blocks without energy (e.g. power off) since
        self._open_block(b)
        self._block_mwh = 0

    def _open_block(self, b):
        self._block = b
        self._block_start = b * self.demand_period_s - self.tz_offset_s
        self._block_end = self._block_start + self.demand_period_s

    def next_block_boundary(self, t):
        """The first demand-block boundary after Unix second t."""
        if self._block >= 0 and self._block_start <= t < self._block_end:
            return self._block_end  # the open block's end (no big-int arithmetic on 32-bit)
        return t - (t + self.tz_offset_s) % self.demand_period_s + self.demand_period_s

    def replay(self, import_mwh, export_mwh, now):
        """Add energy counted after the state that was restored (the meter's journal replay):
        the registers, and the open demand block if `now` is still inside it."""
        self.import_reg.add_mwh(import_mwh)
        self.export_reg.add_mwh(export_mwh)
        if self._block >= 0 and self._block_of(now - 1) == self._block:
            self._block_mwh += import_mwh

    def rising_demand_w(self, now):
        """Average import power of the open block so far (W)."""
        if self._block < 0:
            return 0
        elapsed = now - (self._block * self.demand_period_s - self.tz_offset_s)
        if elapsed <= 0:
            return 0
        return self._block_mwh * 3600 // (elapsed * 1000)

    def reset_max_demand(self):
        """Billing reset of the maximum demand."""
        self.max_demand_w = 0
        self.max_demand_time = 0

    # --- read-out & persistence -----------------------------------------------------------
    def snapshot(self):
        """Read-out for display/DLMS: dict of current values (ints)."""
        return {
            "import_wh": self.import_reg.wh,
            "import_mwh": self.import_reg.total_mwh(),
            "export_wh": self.export_reg.wh,
            "export_mwh": self.export_reg.total_mwh(),
            "voltage_mv": self.voltage_mv,
            "current_ma": self.current_ma,
            "power_w": self.power_w,
            "pf_permille": self.pf_permille,
            "last_demand_w": self.last_demand_w,
            "max_demand_w": self.max_demand_w,
            "max_demand_time": self.max_demand_time,
        }

    def dump(self):
        """Persistent form (registers, carried remainders, demand); instantaneous values excluded."""
        return dumped(self, _MET_SIZE)

    def dump_into(self, buf, off):
        """Write dump() into the bytearray buf at off (no bytes allocated); returns the end."""
        struct.pack_into(
            _MET_FMT, buf, off, _MET_VERSION,
            self.import_reg.wh, self.import_reg.mwh, self.export_reg.wh, self.export_reg.mwh,
            self._pulse_rem[0], self._pulse_rem[1], self._sample_rem(0), self._sample_rem(1),
            self._block, self._block_mwh, self.last_demand_w, self.max_demand_w, self.max_demand_time,
        )
        return off + _MET_SIZE

    def load(self, data):
        """Restore from `dump()` output; ValueError (state untouched) on bad data."""
        if len(data) != struct.calcsize(_MET_FMT):
            raise ValueError("metrology record: bad length %d" % len(data))
        f = struct.unpack(_MET_FMT, data)
        if f[0] != _MET_VERSION:
            raise ValueError("metrology record: unknown version %d" % f[0])
        if f[2] > 999 or f[4] > 999:
            raise ValueError("metrology record: mWh out of range")
        if f[5] >= self.meter_constant or f[6] >= self.meter_constant:
            raise ValueError("metrology record: pulse remainder out of range")
        if f[7] >= SAMPLE_UNITS_PER_MWH or f[8] >= SAMPLE_UNITS_PER_MWH:
            raise ValueError("metrology record: sample remainder out of range")
        self.import_reg.wh, self.import_reg.mwh = f[1], f[2]
        self.export_reg.wh, self.export_reg.mwh = f[3], f[4]
        self._pulse_rem = [f[5], f[6]]
        self._set_sample_rem(0, f[7])
        self._set_sample_rem(1, f[8])
        self._open_block(f[9])
        self._block_mwh = f[10]
        self.last_demand_w, self.max_demand_w, self.max_demand_time = f[11], f[12], f[13]
