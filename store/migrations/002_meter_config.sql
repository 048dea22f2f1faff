-- 002: the register's rollover point, from the registry CSV's optional register_modulus column.
-- The value at which the device's cumulative register (energy, fuel) wraps to 0, in the metric's canonical unit
-- (kWh, l): a meter showing at most 99999.99 kWh in steps of 0.01 wraps at 100000. NULL = unknown / never wraps.

ALTER TABLE devices ADD COLUMN register_modulus double precision CHECK (register_modulus > 0);
