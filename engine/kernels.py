"""The engine's loops: small kernels that read columns and write into preallocated arrays.

Every kernel here is written once as a plain Python function over numpy arrays and compiled with
``numba.njit(cache=True)``; :data:`KERNELS` holds both builds, ``"numba"`` and ``"python"``, and the test suite runs
on both (the pattern of pvlib's ``spa.py``). Helpers are ``register_jitable``: plain Python when the Python build
calls them, compiled when a kernel does; LLVM inlines the small scalar ones, but a helper taking arrays stays a call
(every array is passed as ~7 words and reference-counted), which is why the hot loops write their array work in
line. :func:`prefetch` is a cache hint in compiled code and nothing in Python. They all live in this one file on
purpose: numba's on-disk cache is invalidated by a change to the kernel's own source file only, so a helper in
another file could leave a stale compiled kernel behind.

Conventions (callers in :mod:`engine.counters`, :mod:`engine.buckets`, :mod:`engine.rollups`,
:mod:`engine.emissions`, :mod:`engine.fused`, :mod:`engine.streetlights` prepare the arrays and check them; kernels
trust them):

- times are int64 UTC epoch microseconds (``*_us``); ``NO_TS`` (int64 minimum) means "none";
- devices are dense int32 indices ``0..n_devices-1``; per-device tables are in CSR form (``ptr[d]:ptr[d+1]``);
- bucket outputs are laid out bucket-first, ``out[bucket, device]`` (measured ~4x faster than device-first when the
  input is in time order: docs/reference.md#platform-measurements), over edges ``edges_us[0] < edges_us[1] < ...``;
  bucket ``b`` is the half-open span ``[edges_us[b], edges_us[b + 1])``;
- a step table (multipliers, emission factors) is a list of ``(from_us, value)`` rows sorted by ``from_us``; the
  value holds from ``from_us`` until the next row; before the first row there is no value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

NO_TS = -(2**63)  # int64 minimum: "no timestamp"
MAX_TS = 2**63 - 1
US_PER_H = 3_600_000_000

# Interval quality, worst = highest. Mirrored by engine.counters.Quality.
Q_MEASURED = 0  # both readings trusted, consecutive, every rule clean
Q_ESTIMATED = 1  # total exact (or best estimate) but its spread over time is assumed
Q_SUSPECT = 2  # failed a plausibility rule: amount set to 0, the computed value kept in ``raw``
Q_MISSING = 3  # the amount could not be determined (in part or at all); what is emitted is a lower bound

# Reason bits, OR-ed per interval. Mirrored by engine.counters.Reason.
R_NO_PREVIOUS = 1 << 0  # first reading of the device: nothing before it, zero-length row
R_ROLLOVER = 1 << 1  # the register wrapped past its modulus; +modulus applied
R_RESET = 1 << 2  # a reset / meter-swap event inside the interval was applied
R_RESET_FINAL_UNKNOWN = 1 << 3  # ... but the old register's final value is unknown: its part is lost
R_MULTIPLIER_SPLIT = 1 << 4  # the multiplier changed inside the interval; constant primary power assumed
R_GAP = 1 << 5  # interval longer than gap_factor x cadence: spread evenly over the gap
R_NEGATIVE = 1 << 6  # register went backwards without rollover or reset event
R_OVER_CAP = 1 << 7  # amount above the bound (rated or learned) x elapsed hours x tolerance
R_BRIDGED = 1 << 8  # amount measured from the last trusted reading before a suspect interval
R_ZERO_DT = 1 << 9  # register moved between two readings with the same timestamp
R_OUT_OF_ORDER = 1 << 10  # reading older than the device's carried state: ignored
R_NOT_FINITE = 1 << 11  # register NaN or infinite: ignored
# A jump over the cap of its own interval that fits the cap since the register last changed: a stuck register (or a
# device that buffered) catching up, or a spike after an idle spell. Held (suspect) until the next reading tells;
# the run is anchored where the register stuck, so the catch-up is spread over the flat run.
R_FLAT_SPREAD = 1 << 12
# The meter has no bound yet (no rated power, nothing learned, no prior): a positive amount waits until consistent
# readings confirm the load (R_LOAD_CONFIRMED) or a bound becomes known.
R_UNCONFIRMED = 1 << 13
# Over the bound, but confirmed by consistent readings since: the learned bound was raised and the amount emitted
# over the whole run (docs/reference.md#plausibility-bound-of-a-register).
R_LOAD_CONFIRMED = 1 << 14
# The bound and the elapsed time allow one more turn of the register than the amount counts: the readings do not
# tell how many times it wrapped. The amount is the smallest reading (a lower bound).
R_WRAP_AMBIGUOUS = 1 << 15

SUSPECT_BITS = R_NEGATIVE | R_OVER_CAP | R_ZERO_DT | R_OUT_OF_ORDER | R_NOT_FINITE | R_UNCONFIRMED
MISSING_BITS = R_NO_PREVIOUS | R_RESET_FINAL_UNKNOWN | R_WRAP_AMBIGUOUS
ESTIMATED_BITS = R_MULTIPLIER_SPLIT | R_GAP | R_BRIDGED | R_LOAD_CONFIRMED


# --------------------------------------------------------------------------------------------------------- helpers
@register_jitable
def bisect_right(a: Any, x: Any, lo: int, hi: int) -> int:
    """First index in ``a[lo:hi]`` (sorted) whose value is > x; ``hi`` if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@register_jitable
def quality_of(reasons: int) -> int:
    """Quality flag implied by a set of reason bits (suspect > missing > estimated > measured)."""
    if reasons & SUSPECT_BITS:
        return Q_SUSPECT
    if reasons & MISSING_BITS:
        return Q_MISSING
    if reasons & ESTIMATED_BITS:
        return Q_ESTIMATED
    return Q_MEASURED


@register_jitable
def mean_inverse_multiplier(m_from_us: Any, m_value: Any, lo: int, hi: int, t0_us: int, t1_us: int) -> tuple:
    """Time-weighted mean of 1/multiplier over (t0, t1] and whether a change fell strictly inside.

    Multiplier 1 before the first row. The register counts primary energy / multiplier, so with constant primary
    power over the span, primary = register delta / mean(1/multiplier) exactly.
    """
    j = bisect_right(m_from_us, t0_us, lo, hi) - 1
    m = m_value[j] if j >= lo else 1.0
    k = j + 1
    if t1_us <= t0_us or k >= hi or m_from_us[k] >= t1_us:
        return 1.0 / m, False
    acc = 0.0
    a = t0_us
    while k < hi and m_from_us[k] < t1_us:
        acc += (m_from_us[k] - a) / m
        a = m_from_us[k]
        m = m_value[k]
        k += 1
    acc += (t1_us - a) / m
    return acc / (t1_us - t0_us), True


@register_jitable
def cap_of(bound_per_h: float, t0_us: int, t1_us: int, cap_tolerance: float) -> float:
    """The most a meter with this plausibility bound (kW or L/h) can count over (t0, t1]: bound x elapsed hours x
    tolerance; -1 when no bound is known (0)."""
    if bound_per_h <= 0.0:
        return -1.0
    return bound_per_h * ((t1_us - t0_us) / US_PER_H) * cap_tolerance


@register_jitable
def register_delta(r0: float, r1: float, modulus: float, wrap_max_fraction: float, limit: float, slack: float) -> tuple:
    """Register advance r0 -> r1 and its reason bits; ``limit`` is the most the register can advance in the time
    (the cap, in register units), -1 if unknown.

    Without a modulus a negative delta is R_NEGATIVE. With one, the advance ``fwd`` (through at most one wrap) and
    the step back ``back = modulus - fwd`` are both readings of the change: a step back of at most
    ``wrap_max_fraction x modulus`` is taken for what it looks like, a small backward step (R_NEGATIVE; across the
    wrap point when the register went up by nearly the modulus, as a stale reading from before a rollover does).
    Otherwise a wrap (R_ROLLOVER) is read when ``fwd`` is within ``slack x`` the limit (a load outgrowing a learned
    bound must not read as a backward step; :func:`judge` then holds it if it is over the limit itself), or within
    ``wrap_max_fraction x modulus``. Whether the limit allows a whole extra turn is :func:`turns_unknown`'s.
    """
    delta = r1 - r0
    if delta >= 0.0:  # the common case first: forward, no wrap
        if modulus <= 0.0:
            return delta, 0
        if delta >= modulus - wrap_max_fraction * modulus:  # up by nearly a turn: a small step back across the wrap
            return delta - modulus, R_NEGATIVE
        return delta, 0
    if modulus <= 0.0:
        return delta, R_NEGATIVE
    small = wrap_max_fraction * modulus
    fwd = (r1 + modulus) - r0
    if r0 - r1 <= small or not (0.0 <= fwd <= max(slack * limit, small)):
        return delta, R_NEGATIVE
    return fwd, R_ROLLOVER


@register_jitable
def turns_unknown(advance: float, reasons: int, modulus: float, limit: float) -> int:
    """Add R_WRAP_AMBIGUOUS to a forward register advance when ``limit`` (the cap, in register units; -1 if unknown)
    allows a whole extra turn of the register: the readings do not tell how many times it wrapped. (Apart from
    :func:`register_delta` so that the path every reading takes compares with the cap only at the end.)"""
    if modulus > 0.0 and limit >= 0.0 and not (reasons & R_NEGATIVE) and advance + modulus <= limit:
        return reasons | R_WRAP_AMBIGUOUS
    return reasons


@register_jitable
def segment_amount(
    t0_us: int,
    r0: float,
    t1_us: int,
    r1: float,
    modulus: float,
    wrap_max_fraction: float,
    limit: float,
    slack: float,
    m_from_us: Any,
    m_value: Any,
    mlo: int,
    mhi: int,
) -> tuple:
    """Amount (register units x multiplier) of one continuous register segment, and its reason bits.

    The register's advance is read by :func:`register_delta` against ``limit`` (the cap, in amount units; -1 if
    unknown); a backward step is returned as is, negative, with R_NEGATIVE.
    """
    inv, split = mean_inverse_multiplier(m_from_us, m_value, mlo, mhi, t0_us, t1_us)
    limit_register = limit * inv if limit >= 0.0 else -1.0
    delta, reasons = register_delta(r0, r1, modulus, wrap_max_fraction, limit_register, slack)
    reasons = turns_unknown(delta, reasons, modulus, limit_register)
    if split:
        reasons |= R_MULTIPLIER_SPLIT
    return delta / inv, reasons


@register_jitable
def span_amount(
    d: Any,  # device index (an int, or unsigned in the fused kernel)
    t0_us: int,
    r0: float,
    t1_us: int,
    r1: float,
    modulus: float,
    wrap_max_fraction: float,
    limit: float,
    slack: float,
    ev_ptr: Any,
    ev_at_us: Any,
    ev_old_final: Any,
    ev_new_start: Any,
    m_ptr: Any,
    m_from_us: Any,
    m_value: Any,
) -> tuple:
    """Amount between reading (t0, r0) and reading (t1, r1) of device d, applying the reset/swap events in (t0, t1].

    Each event at ``at`` ends the old register at ``old_final`` and starts the new one at ``new_start``; readings at
    or after ``at`` are of the new register. An unknown ``old_final`` (NaN) loses that segment (R_RESET_FINAL_UNKNOWN).
    ``limit`` is the cap of the whole span (amount units; -1 if unknown), used by each segment to read a wrap.
    """
    reasons = 0
    amount = 0.0
    mlo = m_ptr[d]
    mhi = m_ptr[d + 1]
    hi = ev_ptr[d + 1]
    k = bisect_right(ev_at_us, t0_us, ev_ptr[d], hi)
    st = t0_us
    sr = r0
    while k < hi and ev_at_us[k] <= t1_us:
        reasons |= R_RESET
        final = ev_old_final[k]
        if math.isnan(final):
            reasons |= R_RESET_FINAL_UNKNOWN
        else:
            a, why = segment_amount(
                st, sr, ev_at_us[k], final, modulus, wrap_max_fraction, limit, slack, m_from_us, m_value, mlo, mhi
            )
            amount += a
            reasons |= why
        st = ev_at_us[k]
        sr = ev_new_start[k]
        k += 1
    a, why = segment_amount(st, sr, t1_us, r1, modulus, wrap_max_fraction, limit, slack, m_from_us, m_value, mlo, mhi)
    return amount + a, reasons | why


@register_jitable
def judge(amount: float, reasons: int, t0_us: int, t1_us: int, cap: float) -> int:
    """Add the plausibility verdict to ``reasons``: negative, zero elapsed time, over the cap, or (no bound known,
    ``cap`` < 0) a positive amount not yet confirmed."""
    if reasons & R_NEGATIVE:
        return reasons
    if t1_us == t0_us:
        if amount > 0.0:
            reasons |= R_ZERO_DT
    elif cap < 0.0:
        if amount > 0.0:
            reasons |= R_UNCONFIRMED
    elif amount > cap:
        reasons |= R_OVER_CAP
    return reasons


@register_jitable
def fits(amount: float, bound_per_h: float, t0_us: int, t1_us: int, cap_tolerance: float) -> bool:
    """Whether a forward amount passes the plausibility checks over (t0, t1]."""
    return not (judge(amount, 0, t0_us, t1_us, cap_of(bound_per_h, t0_us, t1_us, cap_tolerance)) & SUSPECT_BITS)


@register_jitable
def held_step(
    d: Any,
    t0_us: int,
    r0: float,
    t1_us: int,
    r1: float,
    amount: float,
    reasons: int,
    ta_us: int,
    ra: float,
    tf_us: int,
    bound_per_h: float,
    fixed: bool,
    cadence_us: int,
    modulus: float,
    wrap_max_fraction: float,
    cap_tolerance: float,
    headroom: float,
    consistency: float,
    confirm_steps: int,
    ev_ptr: Any,
    ev_at_us: Any,
    ev_old_final: Any,
    ev_new_start: Any,
    m_ptr: Any,
    m_from_us: Any,
    m_value: Any,
    tail_ts_us: Any,
    tail_register: Any,
    tail_n: Any,
    tail_lo_per_h: Any,
    tail_hi_per_h: Any,
    run_hi_per_h: Any,
) -> tuple:
    """The rules for an interval that is suspect on its own, or that comes while a suspect run is open (anchor
    ``ta_us``, ``ra``; NO_TS = none): the flat-run mark, the catch-up from the anchor, a learned bound's
    confirmation (:func:`learn_from_run`), and the anchor after it. Both kernels call it, only on that path, so the
    path every clean reading takes stays short. Returns (amount, reasons, start of the emitted interval, bound,
    anchor time, anchor register).
    """
    if (reasons & R_NEGATIVE) and not fixed:
        tail_n[d] = -1  # whatever catches it up, the step out of a backward step is no evidence of a load
    # a run opened here is anchored at the first reading of the last trusted value: the register read r0 since then
    # (it may have been stuck), so that is the span any catch-up covers
    held_at = tf_us if tf_us != NO_TS and tf_us < t0_us else t0_us
    if (reasons & R_OVER_CAP) and held_at < t0_us and fits(amount, bound_per_h, held_at, t1_us, cap_tolerance):
        reasons |= R_FLAT_SPREAD  # a stuck register catching up, or a spike after an idle spell
    start = t0_us
    if ta_us != NO_TS and not (reasons & R_NEGATIVE):
        # the catch-up over the whole run since the anchor, judged and emitted over it; not to a reading that went
        # back (it, or the one before, is wrong: the next reading tells which)
        b_cap = cap_of(bound_per_h, ta_us, t1_us, cap_tolerance)
        b_amount, b_reasons = span_amount(
            d, ta_us, ra, t1_us, r1, modulus, wrap_max_fraction, b_cap, consistency, ev_ptr, ev_at_us, ev_old_final,
            ev_new_start, m_ptr, m_from_us, m_value,
        )  # fmt: skip
        b_reasons = judge(b_amount, b_reasons, ta_us, t1_us, b_cap)
        if not (b_reasons & SUSPECT_BITS):
            amount = b_amount
            reasons = b_reasons | R_BRIDGED
            start = ta_us
    bound = bound_per_h
    if not fixed and ((reasons & SUSPECT_BITS) or (ta_us != NO_TS and start != ta_us and amount > 0.0)):
        amount, reasons, start, bound = learn_from_run(
            d, t0_us, r0, t1_us, r1, amount, reasons, start, ta_us, ra, tf_us, bound, cadence_us, modulus,
            wrap_max_fraction, cap_tolerance, headroom, consistency, confirm_steps, ev_ptr, ev_at_us, ev_old_final,
            ev_new_start, m_ptr, m_from_us, m_value, tail_ts_us, tail_register, tail_n, tail_lo_per_h,
            tail_hi_per_h, run_hi_per_h,
        )  # fmt: skip
    if reasons & SUSPECT_BITS:
        if ta_us == NO_TS:
            ta_us = held_at
            ra = r0
    elif ta_us != NO_TS and amount != 0.0:
        # the run ends: caught up, or a trusted step forward (what was lost before it stays lost). Nothing counted
        # (a flat step, or a catch-up of zero: back at the anchor's value, maybe a stale reading) keeps it open, so
        # that the catch-up can still come
        ta_us = NO_TS
        ra = np.nan
        tail_n[d] = 0
        run_hi_per_h[d] = 0.0
    return amount, reasons, start, bound, ta_us, ra


@register_jitable
def learn_from_run(
    d: Any,
    t0_us: int,
    r0: float,
    t1_us: int,
    r1: float,
    amount: float,
    reasons: int,
    start_us: int,
    ta_us: int,
    ra: float,
    tf_us: int,
    bound_per_h: float,
    cadence_us: int,
    modulus: float,
    wrap_max_fraction: float,
    cap_tolerance: float,
    headroom: float,
    consistency: float,
    confirm_steps: int,
    ev_ptr: Any,
    ev_at_us: Any,
    ev_old_final: Any,
    ev_new_start: Any,
    m_ptr: Any,
    m_from_us: Any,
    m_value: Any,
    tail_ts_us: Any,
    tail_register: Any,
    tail_n: Any,
    tail_lo_per_h: Any,
    tail_hi_per_h: Any,
    run_hi_per_h: Any,
) -> tuple:
    """A step (t0, t1] of a meter whose bound is learned, in a suspect run or starting one: is it a real load?

    Called for a suspect step, and for a trusted step forward (over (``start``, t1], ``start`` before t0 when it catches
    up a flat run) that would end an open run. The ``tail_*`` arrays hold, per device, the current tail of consecutive
    forward steps over the bound: where it began, how many steps, the greatest power they surely reached and the least
    they may have had. A step's power is at least its amount over all the time since the register last changed
    (``tf_us``: it may have been stuck, and then caught up) and at most its amount over its own interval (it may have
    been off); never over less than a cadence, so a reading a few seconds after the previous one is not a high power. A
    step joins the tail when all their powers can lie within ``consistency`` of each other, else it starts a new tail; a
    backward step ends the tail (the caller marks it with ``tail_n`` = -1, even when a catch-up follows), and the step
    out of it (which starts at a doubtful reading) is not counted. Steps of zero amount are not seen here.
    ``run_hi_per_h`` keeps the greatest power of the run's steps that agreed with another (a tail of two or more): a
    lone jump, a spike, is never among them.

    The load is confirmed when ``confirm_steps`` steps agree, or when a trusted step ends the run and the amount from
    the anchor is within ``consistency`` x the cap of that span (its mean power then counts as a power seen). The bound
    then becomes ``headroom x`` the greatest of those powers (never lower than it was), and the amount from the anchor
    (the last trusted reading before the run) or else from the start of the consistent steps is emitted over that whole
    span, if it passes the raised bound there (R_BRIDGED | R_LOAD_CONFIRMED). One reading, however far off, never raises
    the bound. Returns (amount, reasons, start of the emitted interval, bound).
    """
    closing = not (reasons & SUSPECT_BITS)
    if not closing:
        if not (reasons & (R_OVER_CAP | R_UNCONFIRMED)):  # a backward step: the caller has ended the tail
            return amount, reasons, t0_us, bound_per_h
        if tail_n[d] < 0:
            tail_n[d] = 0
            return amount, reasons, t0_us, bound_per_h
    # the step's power: at least the amount over all the time since the register last changed (it may have been
    # stuck), at most the amount over its own interval (it may have been off); never over less than a cadence
    since = t0_us if tf_us == NO_TS else min(tf_us, t0_us)
    p_low = amount / (max(t1_us - since, cadence_us) / US_PER_H)
    p_high = amount / (max(t1_us - t0_us, cadence_us) / US_PER_H)
    n = tail_n[d]
    agrees = n > 0 and max(tail_hi_per_h[d], p_low) <= consistency * min(tail_lo_per_h[d], p_high)
    if closing:
        # the register came back under the bound without going back: from the anchor to this trusted reading it
        # counted A. Within ``consistency`` x the cap of that span, A is a real load (the steps over the bound were
        # real; a fault beyond that must repeat to be believed, as a spike or a stale reading never does)
        soft = consistency * cap_of(bound_per_h, ta_us, t1_us, cap_tolerance)
        b_amount, b_reasons = span_amount(
            d, ta_us, ra, t1_us, r1, modulus, wrap_max_fraction, soft, 1.0, ev_ptr, ev_at_us, ev_old_final,
            ev_new_start, m_ptr, m_from_us, m_value,
        )  # fmt: skip
        if (b_reasons & R_NEGATIVE) or not (0.0 < b_amount <= soft):
            return amount, reasons, start_us, bound_per_h
        top = max(run_hi_per_h[d], b_amount / (max(t1_us - ta_us, cadence_us) / US_PER_H))
        starts = 1
    else:
        if agrees:
            tail_n[d] = n + 1
            tail_lo_per_h[d] = min(tail_lo_per_h[d], p_high)
            tail_hi_per_h[d] = max(tail_hi_per_h[d], p_low)
            run_hi_per_h[d] = max(run_hi_per_h[d], tail_hi_per_h[d])
        else:
            tail_n[d] = 1
            tail_lo_per_h[d] = p_high
            tail_hi_per_h[d] = p_low
            tail_ts_us[d] = t0_us
            tail_register[d] = r0
        if tail_n[d] < confirm_steps:
            return amount, reasons, t0_us, bound_per_h
        top = run_hi_per_h[d]
        starts = 2
    bound = max(bound_per_h, headroom * top)
    tail_n[d] = 0
    run_hi_per_h[d] = 0.0
    for k in range(starts):
        s_us = ta_us if k == 0 else tail_ts_us[d]
        s_reg = ra if k == 0 else tail_register[d]
        if s_us == NO_TS:
            continue
        cap = cap_of(bound, s_us, t1_us, cap_tolerance)
        b_amount, b_reasons = span_amount(
            d, s_us, s_reg, t1_us, r1, modulus, wrap_max_fraction, cap, consistency, ev_ptr, ev_at_us,
            ev_old_final, ev_new_start, m_ptr, m_from_us, m_value,
        )  # fmt: skip
        b_reasons = judge(b_amount, b_reasons, s_us, t1_us, cap)
        if not (b_reasons & SUSPECT_BITS):
            return b_amount, b_reasons | R_BRIDGED | R_LOAD_CONFIRMED, s_us, bound
    return amount, reasons, start_us, bound


@register_jitable
def step_index(from_us: Any, lo: int, hi: int, t_us: int) -> int:
    """Row of the step table ``from_us[lo:hi]`` in force at t; ``lo - 1`` before the first row."""
    return bisect_right(from_us, t_us, lo, hi) - 1


@register_jitable
def overlap_with_set(set_start_us: Any, set_end_us: Any, a_us: int, b_us: int) -> int:
    """Microseconds of [a, b) inside the union of sorted, disjoint spans [set_start[k], set_end[k])."""
    n = set_start_us.shape[0]
    k = bisect_right(set_start_us, a_us, 0, n) - 1
    if k < 0:
        k = 0
    total = 0
    while k < n and set_start_us[k] < b_us:
        lo = max(a_us, set_start_us[k])
        hi = min(b_us, set_end_us[k])
        if hi > lo:
            total += hi - lo
        k += 1
    return total


# --------------------------------------------------------------------------------------------------------- kernels
def counter_kernel(
    device_idx: Any,
    ts_us: Any,
    register: Any,
    modulus: Any,
    rated_per_h: Any,
    cadence_us: Any,
    gap_factor: float,
    cap_tolerance: float,
    wrap_max_fraction: float,
    headroom: float,
    consistency: float,
    confirm_steps: int,
    ev_ptr: Any,
    ev_at_us: Any,
    ev_old_final: Any,
    ev_new_start: Any,
    m_ptr: Any,
    m_from_us: Any,
    m_value: Any,
    st_last_ts_us: Any,
    st_last_register: Any,
    st_anchor_ts_us: Any,
    st_anchor_register: Any,
    st_flat_ts_us: Any,
    st_bound_per_h: Any,
    st_tail_ts_us: Any,
    st_tail_register: Any,
    st_tail_n: Any,
    st_tail_lo_per_h: Any,
    st_tail_hi_per_h: Any,
    st_run_hi_per_h: Any,
    out_start_us: Any,
    out_end_us: Any,
    out_amount: Any,
    out_raw: Any,
    out_quality: Any,
    out_reasons: Any,
    out_bound_per_h: Any,
    out_cover_from_us: Any,
) -> None:
    """Cumulative register readings to one interval per reading; see :func:`engine.counters.register_intervals`.

    The ``st_*`` arrays are the per-device carry state, read and updated in place. A device's bound is its rated
    power when that is > 0 (fixed), else its learned bound ``st_bound_per_h`` (0 = none yet), which
    :func:`learn_from_run` may raise.
    """
    for i in range(device_idx.shape[0]):
        d = device_idx[i]
        t1 = ts_us[i]
        r1 = register[i]
        t0 = st_last_ts_us[d]
        fixed = rated_per_h[d] > 0.0
        bound = rated_per_h[d] if fixed else st_bound_per_h[d]
        out_end_us[i] = t1
        out_cover_from_us[i] = t1
        out_bound_per_h[i] = bound
        if not math.isfinite(r1) or (t0 != NO_TS and t1 < t0):
            out_start_us[i] = t1
            out_amount[i] = 0.0
            out_raw[i] = np.nan
            out_reasons[i] = R_NOT_FINITE if not math.isfinite(r1) else R_OUT_OF_ORDER
            out_quality[i] = Q_SUSPECT
            continue
        if t0 == NO_TS:
            out_start_us[i] = t1
            out_amount[i] = 0.0
            out_raw[i] = np.nan
            out_reasons[i] = R_NO_PREVIOUS
            out_quality[i] = Q_MISSING
            st_last_ts_us[d] = t1
            st_last_register[d] = r1
            st_flat_ts_us[d] = t1
            continue
        r0 = st_last_register[d]
        cap = cap_of(bound, t0, t1, cap_tolerance)
        amount, reasons = span_amount(
            d, t0, r0, t1, r1, modulus[d], wrap_max_fraction, cap, consistency, ev_ptr, ev_at_us, ev_old_final,
            ev_new_start, m_ptr, m_from_us, m_value,
        )  # fmt: skip
        reasons = judge(amount, reasons, t0, t1, cap)
        start = t0
        tf = st_flat_ts_us[d]
        ta = st_anchor_ts_us[d]
        if ta != NO_TS or (reasons & SUSPECT_BITS):
            amount, reasons, start, bound, ta, ra = held_step(
                d, t0, r0, t1, r1, amount, reasons, ta, st_anchor_register[d], tf, bound, fixed, cadence_us[d],
                modulus[d], wrap_max_fraction, cap_tolerance, headroom, consistency, confirm_steps, ev_ptr, ev_at_us,
                ev_old_final, ev_new_start, m_ptr, m_from_us, m_value, st_tail_ts_us, st_tail_register, st_tail_n,
                st_tail_lo_per_h, st_tail_hi_per_h, st_run_hi_per_h,
            )  # fmt: skip
            st_anchor_ts_us[d] = ta
            st_anchor_register[d] = ra
            if not fixed:
                st_bound_per_h[d] = bound
            out_bound_per_h[i] = bound
        if cadence_us[d] > 0 and (t1 - t0) > gap_factor * cadence_us[d]:
            reasons |= R_GAP
        q = quality_of(reasons)
        out_start_us[i] = start
        out_cover_from_us[i] = t0
        out_raw[i] = amount
        out_amount[i] = 0.0 if q == Q_SUSPECT else amount
        out_quality[i] = q
        out_reasons[i] = reasons
        if r1 != r0:
            st_flat_ts_us[d] = t1  # a new value: a flat run, if one follows, starts here
        elif tf == NO_TS:
            st_flat_ts_us[d] = t0
        st_last_ts_us[d] = t1
        st_last_register[d] = r1


def spread_kernel(
    device_idx: Any,
    start_us: Any,
    end_us: Any,
    amount: Any,
    quality: Any,
    edges_us: Any,
    series_of_device: Any,
    w_ptr: Any,
    w_from_us: Any,
    w_value: Any,
    out_weighted: Any,
    out_weighted_estimated: Any,
    out_unweighted: Any,
    out_covered_us: Any,
    out_quality: Any,
    out_count: Any,
    cover_from_us: Any,
) -> None:
    """Spread each interval's amount over the buckets it covers, pro rata by time, times a step weight.

    For the interval's piece [x, y) inside bucket b, ``amount x (y - x) / (end - start) x weight(x..y)`` goes to
    ``out_weighted[b, d]``; the weight is the device's step series (``series_of_device[d]``, -1 = none), split at
    every step change, so an interval straddling a factor change is cut at the change instant. Where no weight is
    in force (NaN, before the first row, or no series) the unweighted amount goes to ``out_unweighted``. The part
    from non-measured intervals is also added to ``out_weighted_estimated``. A zero-length interval is a point in
    the bucket containing ``start``; it counts only if its amount is non-zero or it is suspect.
    ``out_quality`` must start at -1 (= untouched); it becomes the worst quality of the intervals touching the bucket.
    ``out_covered_us`` counts each interval's time from ``cover_from_us`` on (its start, except for a catch-up that
    reaches back over the device's earlier intervals: engine.counters), so each instant is covered once.
    """
    nb = edges_us.shape[0] - 1
    for i in range(device_idx.shape[0]):
        d = device_idx[i]
        s = start_us[i]
        e = end_us[i]
        a = amount[i]
        q = quality[i]
        sr = series_of_device[d]
        lo = 0
        hi = 0
        if sr >= 0:
            lo = w_ptr[sr]
            hi = w_ptr[sr + 1]
        b = bisect_right(edges_us, s, 0, nb + 1) - 1
        if e <= s:
            if (a == 0.0 and q != Q_SUSPECT) or b < 0 or b >= nb:
                continue
            out_count[b, d] += 1
            if q > out_quality[b, d]:
                out_quality[b, d] = q
            j = step_index(w_from_us, lo, hi, s)
            w = w_value[j] if j >= lo else np.nan
            if math.isnan(w):
                out_unweighted[b, d] += a
            else:
                out_weighted[b, d] += a * w
                if q != Q_MEASURED:
                    out_weighted_estimated[b, d] += a * w
            continue
        if b < 0:
            b = 0
        dur = e - s
        cover_from = max(s, cover_from_us[i])
        while b < nb and edges_us[b] < e:
            p = max(s, edges_us[b])
            pe = min(e, edges_us[b + 1])
            if pe > p:
                if pe > cover_from:
                    out_covered_us[b, d] += pe - max(p, cover_from)
                out_count[b, d] += 1
                if q > out_quality[b, d]:
                    out_quality[b, d] = q
                j = step_index(w_from_us, lo, hi, p)
                x = p
                while x < pe:
                    y = pe
                    if j + 1 < hi and w_from_us[j + 1] < pe:
                        y = w_from_us[j + 1]
                    part = a * ((y - x) / dur)
                    w = w_value[j] if j >= lo else np.nan
                    if math.isnan(w):
                        out_unweighted[b, d] += part
                    else:
                        out_weighted[b, d] += part * w
                        if q != Q_MEASURED:
                            out_weighted_estimated[b, d] += part * w
                    x = y
                    j += 1
            b += 1


def weight_kernel(
    device_idx: Any,
    start_us: Any,
    end_us: Any,
    amount: Any,
    series_of_device: Any,
    w_ptr: Any,
    w_from_us: Any,
    w_value: Any,
    out_weighted: Any,
    out_unweighted: Any,
) -> None:
    """Per interval: ``amount x weight``, pro rata by time across weight changes (no buckets).

    Same piece rule as :func:`spread_kernel`; a zero-length interval takes the weight in force at ``start``.
    """
    for i in range(device_idx.shape[0]):
        d = device_idx[i]
        s = start_us[i]
        e = end_us[i]
        a = amount[i]
        sr = series_of_device[d]
        lo = 0
        hi = 0
        if sr >= 0:
            lo = w_ptr[sr]
            hi = w_ptr[sr + 1]
        j = step_index(w_from_us, lo, hi, s)
        weighted = 0.0
        unweighted = 0.0
        if e <= s:
            w = w_value[j] if j >= lo else np.nan
            if math.isnan(w):
                unweighted = a
            else:
                weighted = a * w
        else:
            dur = e - s
            x = s
            while x < e:
                y = e
                if j + 1 < hi and w_from_us[j + 1] < e:
                    y = w_from_us[j + 1]
                part = a * ((y - x) / dur)
                w = w_value[j] if j >= lo else np.nan
                if math.isnan(w):
                    unweighted += part
                else:
                    weighted += part * w
                x = y
                j += 1
        out_weighted[i] = weighted
        out_unweighted[i] = unweighted


def sample_kernel(
    device_idx: Any,
    ts_us: Any,
    value: Any,
    edges_us: Any,
    out_sum: Any,
    out_min: Any,
    out_max: Any,
    out_count: Any,
    out_last: Any,
    out_last_ts_us: Any,
) -> None:
    """Per (bucket, device): sum, min, max, count and last (latest timestamp; a tie goes to the later row).

    Samples outside the edges and non-finite values are skipped. Outputs start at 0, +inf, -inf, 0, NaN, NO_TS.
    """
    nb = edges_us.shape[0] - 1
    for i in range(device_idx.shape[0]):
        v = value[i]
        if not math.isfinite(v):
            continue
        t = ts_us[i]
        b = bisect_right(edges_us, t, 0, nb + 1) - 1
        if b < 0 or b >= nb:
            continue
        d = device_idx[i]
        out_sum[b, d] += v
        out_count[b, d] += 1
        if v < out_min[b, d]:
            out_min[b, d] = v
        if v > out_max[b, d]:
            out_max[b, d] = v
        if t >= out_last_ts_us[b, d]:
            out_last_ts_us[b, d] = t
            out_last[b, d] = v


@register_jitable
def lamp_emit(
    d: int,
    a_us: int,
    b_us: int,
    state: int,
    hold_end_us: int,
    edges_us: Any,
    day_start_us: Any,
    day_end_us: Any,
    night_start_us: Any,
    night_end_us: Any,
    out_on_us: Any,
    out_day_on_us: Any,
    out_night_off_us: Any,
    out_night_known_us: Any,
    out_unknown_us: Any,
) -> None:
    """Account the span [a, b) of device d, whose state is ``state`` (1 on, 0 off, -1 unknown) until hold_end."""
    nb = edges_us.shape[0] - 1
    k = bisect_right(edges_us, a_us, 0, nb + 1) - 1
    if k < 0:
        k = 0
    while k < nb and edges_us[k] < b_us:
        p = max(a_us, edges_us[k])
        pe = min(b_us, edges_us[k + 1])
        if pe > p:
            known_end = pe
            if state < 0:
                known_end = p
            elif hold_end_us < pe:
                known_end = max(p, hold_end_us)
            if known_end > p:
                night = overlap_with_set(night_start_us, night_end_us, p, known_end)
                out_night_known_us[k, d] += night
                if state == 1:
                    out_on_us[k, d] += known_end - p
                    out_day_on_us[k, d] += overlap_with_set(day_start_us, day_end_us, p, known_end)
                else:
                    out_night_off_us[k, d] += night
            if pe > known_end:
                out_unknown_us[k, d] += pe - known_end
        k += 1


def lamp_kernel(
    device_idx: Any,
    ts_us: Any,
    lamp_on: Any,
    max_hold_us: Any,
    until_us: int,
    edges_us: Any,
    day_start_us: Any,
    day_end_us: Any,
    night_start_us: Any,
    night_end_us: Any,
    st_last_ts_us: Any,
    st_state: Any,
    st_emitted_us: Any,
    out_on_us: Any,
    out_day_on_us: Any,
    out_night_off_us: Any,
    out_night_known_us: Any,
    out_unknown_us: Any,
) -> int:
    """Lamp on/off state series to burning time, day burning and night outage per bucket; returns late readings.

    See :func:`engine.streetlights.lamp_hours`. ``st_*`` is the per-device carry state, updated in place.
    """
    late = 0
    for i in range(device_idx.shape[0]):
        d = device_idx[i]
        t = ts_us[i]
        v = lamp_on[i]
        s = -1
        if math.isfinite(v):
            s = 1 if v >= 0.5 else 0
        last = st_last_ts_us[d]
        if last != NO_TS and t < last:
            late += 1
            continue
        done = st_emitted_us[d]
        if last != NO_TS and t > done:
            hold_end = MAX_TS if max_hold_us[d] <= 0 else last + max_hold_us[d]
            lamp_emit(
                d, done, t, st_state[d], hold_end, edges_us, day_start_us, day_end_us, night_start_us,
                night_end_us, out_on_us, out_day_on_us, out_night_off_us, out_night_known_us, out_unknown_us,
            )  # fmt: skip
        if last != NO_TS and t < done:
            late += 1
        st_last_ts_us[d] = t
        st_state[d] = s
        st_emitted_us[d] = max(done, t) if last != NO_TS else t
    if until_us != NO_TS:
        for d in range(st_last_ts_us.shape[0]):
            last = st_last_ts_us[d]
            done = st_emitted_us[d]
            if last != NO_TS and until_us > done:
                hold_end = MAX_TS if max_hold_us[d] <= 0 else last + max_hold_us[d]
                lamp_emit(
                    d, done, until_us, st_state[d], hold_end, edges_us, day_start_us, day_end_us, night_start_us,
                    night_end_us, out_on_us, out_day_on_us, out_night_off_us, out_night_known_us, out_unknown_us,
                )  # fmt: skip
                st_emitted_us[d] = until_us
    return late


# The fused kernel's per-device row (packed by engine.fused): 64 bytes, so that a reading touches one cache line of
# device state. Columns 0-3 are read through an int64 view of the row, 4-7 through a float64 view of the same buffer.
DEV_LAST_TS = 0  # CounterState.last_ts_us
DEV_ANCHOR_TS = 1  # CounterState.anchor_ts_us (the anchor's register is in its own array: rarely read)
DEV_FLAT_TS = 2  # CounterState.flat_ts_us
DEV_META = 3  # bit 0: events or multiplier changes; 1: the bound is fixed; 2-31, 32-61: series + 1; 62: deferred
DEV_LAST_REGISTER = 4  # CounterState.last_register
DEV_MODULUS = 5  # MeterParams.modulus
DEV_BOUND_PER_H = 6  # the bound: MeterParams.rated_per_h if fixed, else CounterState.bound_per_h (learned)
DEV_GAP_US = 7  # gap_factor x cadence_us: an interval longer than this is a gap; 0 = no gap detection
META_GENERAL = 1
META_FIXED_BOUND = 2  # rated power: the bound is never raised
META_DEFERRED = 1 << 62  # the fast pass of the fused kernel left this device's readings for the full pass
META_SHIFT_0 = 2  # (series + 1) of weight set 0 (emission factors in force); 0 = no series
META_SHIFT_1 = 32  # (series + 1) of weight set 1 (base-year factors)
META_SERIES_MASK = 0x3FFFFFFF
# The fused kernel's output cell per (bucket, device): 64 bytes, one cache line (engine.fused aligns the buffer), read
# and written through three views of one buffer: float64, int64 and int32 (the index is in units of each). The
# quality is in its own (n_buckets, n_devices) int8 array: a bucket's row of it stays in cache.
CELL_AMOUNT = 0  # float64: IntervalBuckets.amount
CELL_ESTIMATED = 1  # float64: IntervalBuckets.amount_estimated
CELL_WEIGHTED_0 = 2  # float64: amount x weight of set 0 (kgCO2e at the factor in force)
CELL_WEIGHTED_1 = 3  # float64: amount x weight of set 1 (kgCO2e at the base-year factor)
CELL_COVERED_US = 4  # int64 (bytes 32-39): IntervalBuckets.covered_us
CELL_COUNT = 10  # int32 (bytes 40-43): IntervalBuckets.count
CELL_BYTES = 64
PREFETCH_AHEAD = 16  # readings: how far ahead the fused kernel asks for the cache lines of a reading
RING_MASK = 31  # the fused kernel keeps the end buckets of the next readings in a ring of 32 > PREFETCH_AHEAD


def prefetch(arr: Any, index: tuple) -> None:
    """A hint that ``arr[index]`` will be written soon: a cache-line prefetch when compiled, nothing in Python.

    The fused kernel's reads and writes land on random devices' rows; asked for a few readings ahead, the lines are
    fetched while the readings before are computed, instead of one cache miss after the other.
    """


@intrinsic
def _prefetch_for_write(typingctx: Any, arr: Any, index: Any) -> Any:
    if not isinstance(arr, types.Array) or not isinstance(index, types.BaseTuple) or len(index) != arr.ndim:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array_type, index_type = sig.args
        array = context.make_array(array_type)(context, builder, args[0])
        idx = [context.cast(builder, v, t, types.intp) for v, t in zip(cgutils.unpack_tuple(builder, args[1]),
                                                                         index_type, strict=True)]  # fmt: skip
        ptr = cgutils.get_item_pointer(context, builder, array_type, array, idx, wraparound=False)
        i32 = ir.IntType(32)
        byte_ptr = ir.PointerType(ir.IntType(8))
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]), "llvm.prefetch.p0"
        )
        # rw = 1 (for a write), locality = 3 (keep in every cache level), cache type = 1 (data)
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@overload(prefetch)
def _prefetch_overload(arr: Any, index: Any) -> Any:
    def impl(arr: Any, index: Any) -> None:
        _prefetch_for_write(arr, index)  # type: ignore[call-arg]  # numba supplies typingctx

    return impl


@register_jitable
def add_weighted(
    cells: Any, b: int, d: Any, col: int, a: float, dur: int, p: int, pe: int, w_from_us: Any, w_value: Any,
    lo: int, hi: int,
) -> None:  # fmt: skip
    """:func:`spread_kernel`'s weighting of one piece [p, pe) of an interval of length ``dur`` and amount ``a``,
    split at every step of ``w_from_us[lo:hi]`` inside it, into ``cells[b, d, col]``; ``dur == 0``: a point at p."""
    j = step_index(w_from_us, lo, hi, p)
    if dur == 0:
        if j >= lo and not math.isnan(w_value[j]):
            cells[b, d, col] += a * w_value[j]
        return
    x = p
    while x < pe:
        y = pe
        if j + 1 < hi and w_from_us[j + 1] < pe:
            y = w_from_us[j + 1]
        if j >= lo and not math.isnan(w_value[j]):
            cells[b, d, col] += (a * ((y - x) / dur)) * w_value[j]
        x = y
        j += 1


@register_jitable
def end_bucket(edges_us: Any, step_us: int, t_us: int) -> int:
    """The bucket holding the end of an interval ending at t: the b with edges[b] < t <= edges[b + 1] (-1 before the
    first edge, n_buckets after the last); by an integer division when the edges are evenly spaced by ``step_us``."""
    nb = edges_us.shape[0] - 1
    if step_us <= 0:
        return bisect_right(edges_us, t_us - 1, 0, nb + 1) - 1
    if t_us <= edges_us[0]:
        return -1
    return min((t_us - 1 - edges_us[0]) // step_us, nb)


def fused_kernel_of(full: bool) -> Any:
    """The fused kernel's fast pass (``full`` False) or full pass (True): one source, ``full`` a constant of each
    build (numba compiles the closure with it fixed, and leaves out the path it turns off)."""

    def fused_kernel(
        device_idx: Any,
        ts_us: Any,
        register: Any,
        dev_int: Any,
        dev_float: Any,
        anchor_register: Any,
        cadence_us: Any,
        tail_ts_us: Any,
        tail_register: Any,
        tail_n: Any,
        tail_lo_per_h: Any,
        tail_hi_per_h: Any,
        run_hi_per_h: Any,
        cap_tolerance: float,
        wrap_max_fraction: float,
        headroom: float,
        consistency: float,
        confirm_steps: int,
        ev_ptr: Any,
        ev_at_us: Any,
        ev_old_final: Any,
        ev_new_start: Any,
        m_ptr: Any,
        m_from_us: Any,
        m_value: Any,
        edges_us: Any,
        step_us: int,
        w_ptr: Any,
        w_from_us: Any,
        w_value: Any,
        bucket_w: Any,
        bucket_split: Any,
        cells_float: Any,
        cells_int: Any,
        cells_count: Any,
        out_quality: Any,
        deferred: Any,
        n_deferred: Any,
    ) -> int:
        """Register readings straight to buckets: :func:`counter_kernel`, then :func:`spread_kernel` for the energy and
        for two weight sets (emission factors), in one pass with no interval columns; see
        :func:`engine.fused.register_buckets`.

        Each reading's interval is computed as :func:`counter_kernel` computes it (the same helpers in the same order; a
        device with no events and no multiplier changes takes the rollover rule without :func:`span_amount`, the same
        arithmetic) and spread as :func:`spread_kernel` spreads it, so every sum is bit for bit the pipeline's.

        ``dev_int``/``dev_float`` (the DEV_* rows: two views of one (n_devices, 8) buffer), ``anchor_register`` and the
        ``tail_*`` arrays (:func:`learn_from_run`'s) are the carry state, updated in place; the anchor's register, the
        cadences and the tails are read only for a device in a suspect run, so they stay out of the 64-byte row.
        ``step_us`` > 0 says the edges are evenly spaced by it (a bucket is found by a division instead of a search).
        The weights are one step table (``w_*``, CSR by series) and, per bucket and series, ``bucket_w``: the weight in
        force over the whole bucket, NaN if none or if a step falls inside the bucket (``bucket_split``: the piece is
        then split at it). ``cells_*`` are the float64, int64 and int32 views of one zeroed buffer of (n_buckets,
        n_devices) 64-byte cells holding the CELL_* fields; ``out_quality`` must start at -1.

        Speed: a reading's device row and cells are random cache lines (100,000 devices: 6.4 MB of rows, 6.4 MB of cells
        per bucket). Asked for PREFETCH_AHEAD readings ahead (the row two strides ahead, the cells one stride ahead, the
        row having arrived by then), they arrive while the readings before are worked: 2-4x faster than waiting for each
        miss in turn (benchmarks/engine.py). The piece code is in line: numba does not inline a helper that takes
        arrays, and a call passing these ~25 arrays costs more than the work.

        Two passes, two builds of this kernel (:func:`fused_kernel_of`; ``full`` is a constant of each). Without
        ``full``, the path every clean reading takes, and nothing else: a reading that needs the rules of a suspect run
        (:func:`held_step`) is left for later, with every later reading of its device (a bit in its row marks it); their
        indices go to ``deferred`` (count in ``n_deferred[0]``). With ``full``, every rule:
        :func:`engine.fused.register_buckets` runs the deferred readings through it right after, in order. A cell only
        ever receives its own device's intervals, in that device's order, so the sums are the same bit for bit; the rare
        rules compiled into the hot loop made it ~15 % slower (benchmarks/engine.py). Returns the index of the first
        reading not taken (n when all were), short of n when ``deferred`` is full.
        """
        nb = edges_us.shape[0] - 1
        nd = 0
        n = device_idx.shape[0]
        ring = np.empty(RING_MASK + 1, np.int64)  # end_bucket of the readings between i and i + PREFETCH_AHEAD
        for k in range(min(PREFETCH_AHEAD, n)):
            ring[k & RING_MASK] = end_bucket(edges_us, step_us, ts_us[k])
        for i in range(n):
            # ask for the cache lines of later readings now: their device row (two strides ahead), then (one
            # stride ahead, the row having arrived) the cells of the buckets their interval ends in and, if it
            # straddles, starts in
            k = i + 2 * PREFETCH_AHEAD
            if k < n:
                prefetch(dev_int, (device_idx[k], 0))
            k = i + PREFETCH_AHEAD
            if k < n:
                dk = np.uint32(device_idx[k])
                bk = end_bucket(edges_us, step_us, ts_us[k])
                ring[k & RING_MASK] = bk
                if 0 <= bk < nb:
                    prefetch(cells_float, (bk, dk, 0))
                    if bk > 0 and dev_int[dk, DEV_LAST_TS] < edges_us[bk]:
                        prefetch(cells_float, (bk - 1, dk, 0))
            d = np.uint32(device_idx[i])  # unsigned: numba skips the negative-index fix-up on every access
            t1 = ts_us[i]
            r1 = register[i]
            t0 = dev_int[d, DEV_LAST_TS]
            meta = dev_int[d, DEV_META]
            if not full and (meta & META_DEFERRED):
                if nd == deferred.shape[0]:
                    n_deferred[0] = nd
                    return i
                deferred[nd] = i
                nd += 1
                continue
            start = t1
            cover_from = t1
            a = 0.0
            q = Q_SUSPECT
            if not math.isfinite(r1) or (t0 != NO_TS and t1 < t0):
                pass  # NOT_FINITE / OUT_OF_ORDER: a zero-length suspect row at t1; the state is not advanced
            elif t0 == NO_TS:
                dev_int[d, DEV_LAST_TS] = t1  # NO_PREVIOUS: a zero-length row of amount 0, which no bucket counts
                dev_float[d, DEV_LAST_REGISTER] = r1
                dev_int[d, DEV_FLAT_TS] = t1
                continue
            else:
                r0 = dev_float[d, DEV_LAST_REGISTER]
                modulus = dev_float[d, DEV_MODULUS]
                bound = dev_float[d, DEV_BOUND_PER_H]
                general = meta & META_GENERAL
                cap = cap_of(bound, t0, t1, cap_tolerance)
                if general:
                    amount, reasons = span_amount(
                        d, t0, r0, t1, r1, modulus, wrap_max_fraction, cap, consistency, ev_ptr, ev_at_us, ev_old_final,
                        ev_new_start, m_ptr, m_from_us, m_value,
                    )  # fmt: skip
                else:
                    amount, reasons = register_delta(r0, r1, modulus, wrap_max_fraction, cap, consistency)
                    reasons = turns_unknown(amount, reasons, modulus, cap)
                reasons = judge(amount, reasons, t0, t1, cap)
                start = t0
                tf = dev_int[d, DEV_FLAT_TS]
                ta = dev_int[d, DEV_ANCHOR_TS]
                if ta != NO_TS or (reasons & SUSPECT_BITS):
                    if not full:
                        if nd == deferred.shape[0]:
                            n_deferred[0] = nd
                            return i
                        dev_int[d, DEV_META] = meta | META_DEFERRED
                        deferred[nd] = i
                        nd += 1
                        continue
                    amount, reasons, start, bound, ta, ra = held_step(
                        d, t0, r0, t1, r1, amount, reasons, ta, anchor_register[d], tf, bound,
                        (meta & META_FIXED_BOUND) != 0, cadence_us[d], modulus, wrap_max_fraction, cap_tolerance,
                        headroom, consistency, confirm_steps, ev_ptr, ev_at_us, ev_old_final, ev_new_start, m_ptr,
                        m_from_us, m_value, tail_ts_us, tail_register, tail_n, tail_lo_per_h, tail_hi_per_h,
                        run_hi_per_h,
                    )  # fmt: skip
                    dev_int[d, DEV_ANCHOR_TS] = ta
                    anchor_register[d] = ra
                    dev_float[d, DEV_BOUND_PER_H] = bound
                gap = dev_float[d, DEV_GAP_US]
                if gap > 0.0 and (t1 - t0) > gap:
                    reasons |= R_GAP
                q = quality_of(reasons)
                if r1 != r0:
                    dev_int[d, DEV_FLAT_TS] = t1
                elif tf == NO_TS:
                    dev_int[d, DEV_FLAT_TS] = t0
                dev_int[d, DEV_LAST_TS] = t1
                dev_float[d, DEV_LAST_REGISTER] = r1
                if q != Q_SUSPECT:
                    a = amount
                cover_from = (
                    t0  # a catch-up reaching back over its run covers only (t0, t1] anew (spread_kernel's rule)
                )
            # spread the interval (start, t1] of amount a and quality q, as spread_kernel does
            s0 = ((meta >> META_SHIFT_0) & META_SERIES_MASK) - 1
            s1 = ((meta >> META_SHIFT_1) & META_SERIES_MASK) - 1
            dur = t1 - start
            # the bucket of start, as bisect_right(edges_us, start) - 1 finds it, from the bucket of t1 - 1 (the end of
            # the interval, from the input alone): the same or the one before, unless the interval is a long gap
            b = ring[i & RING_MASK]
            if dur <= 0:  # a zero-length row: a point in the bucket of start, if it carries an amount or a verdict
                if b < nb and edges_us[b + 1] <= start:
                    b += 1
                if (a == 0.0 and q != Q_SUSPECT) or b < 0 or b >= nb:
                    continue
            else:
                while b >= 0 and edges_us[b] > start:
                    b -= 1
                if b < 0:
                    b = 0
            # one piece per bucket the interval covers (a point is one piece [start, start] holding all of a)
            while b < nb:
                if dur <= 0:
                    p = start
                    pe = start
                    part = a
                elif edges_us[b] >= t1:
                    break
                else:
                    p = max(start, edges_us[b])
                    pe = min(t1, edges_us[b + 1])
                    part = a if pe - p == dur else a * ((pe - p) / dur)  # the same value: x / x is exactly 1
                if not full:
                    cells_int[b, d, CELL_COVERED_US] += pe - p  # no catch-up in this pass: it covers from its start
                elif pe > cover_from:
                    cells_int[b, d, CELL_COVERED_US] += pe - max(p, cover_from)
                cells_count[b, d, CELL_COUNT] += 1
                if q > out_quality[b, d]:
                    out_quality[b, d] = q
                cells_float[b, d, CELL_AMOUNT] += part
                if q != Q_MEASURED:
                    cells_float[b, d, CELL_ESTIMATED] += part
                if s0 >= 0:
                    w = bucket_w[b, s0]
                    if not math.isnan(w):
                        cells_float[b, d, CELL_WEIGHTED_0] += part * w
                    elif bucket_split[b, s0]:
                        add_weighted(cells_float, b, d, CELL_WEIGHTED_0, a, dur, p, pe, w_from_us, w_value, w_ptr[s0],
                                     w_ptr[s0 + 1])  # fmt: skip
                if s1 >= 0:
                    w = bucket_w[b, s1]
                    if not math.isnan(w):
                        cells_float[b, d, CELL_WEIGHTED_1] += part * w
                    elif bucket_split[b, s1]:
                        add_weighted(cells_float, b, d, CELL_WEIGHTED_1, a, dur, p, pe, w_from_us, w_value, w_ptr[s1],
                                     w_ptr[s1 + 1])  # fmt: skip
                if dur <= 0:
                    break
                b += 1
        n_deferred[0] = nd
        return n

    return fused_kernel


def partition_kernel(
    device_idx: Any, ts_us: Any, register: Any, shift: int, counts: Any, out_device: Any, out_ts: Any, out_register: Any
) -> None:
    """Readings regrouped by block of devices (``device >> shift``), each device's rows kept in their order (a stable
    counting sort): the fused kernel then works one block's rows and cells at a time, in cache. ``counts`` has one
    more entry than there are blocks; it is overwritten."""
    counts[:] = 0
    for i in range(device_idx.shape[0]):
        counts[(device_idx[i] >> shift) + 1] += 1
    for p in range(counts.shape[0] - 1):
        counts[p + 1] += counts[p]
    for i in range(device_idx.shape[0]):
        p = device_idx[i] >> shift
        j = counts[p]
        out_device[j] = device_idx[i]
        out_ts[j] = ts_us[i]
        out_register[j] = register[i]
        counts[p] = j + 1


def order_kernel(device_idx: Any, ts_us: Any, last_ts_us: Any) -> int:
    """Index of the first row older than its device's previous row, or -1: one pass, no sort.

    ``last_ts_us`` (one per device) must start at the smallest int64; it is overwritten.
    """
    for i in range(device_idx.shape[0]):
        d = device_idx[i]
        if ts_us[i] < last_ts_us[d]:
            return i
        last_ts_us[d] = ts_us[i]
    return -1


_PLAIN = {
    "order": order_kernel,
    "counter": counter_kernel,
    "fused": fused_kernel_of(False),
    "fused_full": fused_kernel_of(True),
    "partition": partition_kernel,
    "spread": spread_kernel,
    "weight": weight_kernel,
    "sample": sample_kernel,
    "lamp": lamp_kernel,
}

KERNELS: dict[str, dict[str, Any]] = {
    "python": dict(_PLAIN),
    "numba": {name: njit(cache=True)(fn) for name, fn in _PLAIN.items()},
}
"""``KERNELS[impl][name]``: impl is ``"numba"`` (compiled lazily on first call, cached on disk) or ``"python"``."""

IMPLS = ("numba", "python")


def kernel(impl: str, name: str) -> Any:
    """The kernel ``name`` of implementation ``impl`` (``"numba"`` or ``"python"``)."""
    try:
        return KERNELS[impl][name]
    except KeyError:
        raise ValueError(f"unknown engine implementation {impl!r} or kernel {name!r}") from None
