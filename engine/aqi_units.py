"""Gas concentration units for the air-quality indices: ppb, ppm, µg/m³ and mg/m³ at 25 °C and 1 atm.

Thai gas standards are referenced to 25 °C and 1 atm (IEAT handbook; docs/reference.md#gas-unit-conversion), where
one mole of an ideal gas fills 24.45 L (the conventional figure). A mixing ratio of 1 ppb of a gas with molar mass
M g/mol is then M / 24.45 µg/m³:

    µg/m³ = ppb × M / 24.45          ppb = µg/m³ × 24.45 / M
    mg/m³ = ppm × M / 24.45          ppm = mg/m³ × 24.45 / M
    ppm   = ppb / 1000

The molar masses are the ones the store's metric catalogue uses to convert wire units into canonical units
(``store/migrations/001_core.sql``: SO2 64.066, NO2 46.0055, O3 47.9982, CO 28.010), so a value converted here and
a value converted on ingest agree. The store keeps gases in ppb (SO2, NO2, O3) and ppm (CO); the Thai AQI table uses
the same units (ppb for O3/NO2/SO2, ppm for CO); the EPA table gives O3 in ppm (EPA-454/B-24-002), converted with
:func:`ppm_from_ppb`.
"""

from __future__ import annotations

from typing import Final, Literal, TypeVar

import numpy as np

MOLAR_VOLUME_L_25C_1ATM: Final = 24.45  # L/mol of an ideal gas at 25 °C, 101.325 kPa (conventional value)

Gas = Literal["so2", "no2", "o3", "co"]
MOLAR_MASS_G_PER_MOL: Final[dict[str, float]] = {
    "so2": 64.066,  # 32.06 + 2 x 15.999 (rounded as in the store's catalogue)
    "no2": 46.0055,  # 14.0067 + 2 x 15.9994
    "o3": 47.9982,  # 3 x 15.9994
    "co": 28.010,  # 12.011 + 15.999
}

F = TypeVar("F", float, np.ndarray)


def _molar_mass(gas: str) -> float:
    try:
        return MOLAR_MASS_G_PER_MOL[gas]
    except KeyError:
        raise ValueError(f"unknown gas {gas!r}: expected one of {sorted(MOLAR_MASS_G_PER_MOL)}") from None


def ugm3_from_ppb(ppb: F, gas: str) -> F:
    """Mass concentration (µg/m³) of a mixing ratio in ppb, at 25 °C and 1 atm."""
    return ppb * _molar_mass(gas) / MOLAR_VOLUME_L_25C_1ATM


def ppb_from_ugm3(ugm3: F, gas: str) -> F:
    """Mixing ratio (ppb) of a mass concentration in µg/m³, at 25 °C and 1 atm."""
    return ugm3 * MOLAR_VOLUME_L_25C_1ATM / _molar_mass(gas)


def mgm3_from_ppm(ppm: F, gas: str) -> F:
    """Mass concentration (mg/m³) of a mixing ratio in ppm, at 25 °C and 1 atm."""
    return ppm * _molar_mass(gas) / MOLAR_VOLUME_L_25C_1ATM


def ppm_from_mgm3(mgm3: F, gas: str) -> F:
    """Mixing ratio (ppm) of a mass concentration in mg/m³, at 25 °C and 1 atm."""
    return mgm3 * MOLAR_VOLUME_L_25C_1ATM / _molar_mass(gas)


def ppm_from_ppb(ppb: F) -> F:
    """ppb to ppm (a mixing ratio: no temperature or pressure involved)."""
    return ppb / 1000.0


def ppb_from_ppm(ppm: F) -> F:
    """ppm to ppb."""
    return ppm * 1000.0
