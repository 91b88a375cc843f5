"""Tests for proteus.training.duals: each stage of a lane's dual update by hand, and the whole
update (both stages, plain and PID) by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus.training import duals

# The base config's dual settings with avg_start = 10 policy steps and no accuracy EMA.
SETTINGS = duals.DualSettings(kind="plain", pid_gains=(2.0, 0.5, 1.0), ema=0.0, avg=0.5,
                              avg_start=10, lr_late=0.2, lam_max=100.0)


def _dual(lam=1.0, acc_ema=0.8, integral=0.0, prev_error=0.0):
    state = duals.init_dual(jnp.asarray(lam, jnp.float32), jnp.asarray(0.8))
    return state._replace(acc_ema=jnp.asarray(acc_ema), integral=jnp.asarray(integral),
                          prev_error=jnp.asarray(prev_error))


def test_init_dual():
    state = duals.init_dual(jnp.asarray(2.0), jnp.asarray(0.9))
    assert float(state.lam) == float(state.lam_avg) == 2.0
    assert float(state.acc_ema) == float(state.acc_avg) == pytest.approx(0.9)
    assert float(state.integral) == float(state.prev_error) == 0.0


def test_dual_update_by_hand():
    up = duals.plain_step(_dual(1.0), jnp.asarray(0.7), jnp.asarray(0.8), jnp.asarray(0.5),
                            jnp.asarray(0.02), 100.0, jnp.asarray(0.0))
    # ema 0: â = 0.7; error = 0.8 + 0.02 - 0.7 = 0.12; λ = 1 + 0.5 · 0.12 = 1.06.
    assert float(up.lam) == pytest.approx(1.06, rel=1e-6)
    assert float(up.prev_error) == pytest.approx(0.12, rel=1e-5)
    assert float(up.acc_ema) == pytest.approx(0.7)
    up = duals.plain_step(_dual(1.0, acc_ema=0.8), jnp.asarray(0.7), jnp.asarray(0.8),
                            jnp.asarray(0.5), jnp.asarray(0.02), 100.0, jnp.asarray(0.9))
    # ema 0.9: â = 0.9 · 0.8 + 0.1 · 0.7 = 0.79; error 0.03; λ = 1.015.
    assert float(up.acc_ema) == pytest.approx(0.79, rel=1e-6)
    assert float(up.lam) == pytest.approx(1.015, rel=1e-6)
    # projection: 0.01 + 0.5 (0.8 - 1.0) = -0.09 -> 0; 99.9 + 0.5 (0.8 - 0) = 100.3 -> 100.
    low = duals.plain_step(_dual(0.01), jnp.asarray(1.0), jnp.asarray(0.8), jnp.asarray(0.5),
                             jnp.asarray(0.0), 100.0, jnp.asarray(0.0))
    high = duals.plain_step(_dual(99.9), jnp.asarray(0.0), jnp.asarray(0.8), jnp.asarray(0.5),
                              jnp.asarray(0.0), 100.0, jnp.asarray(0.0))
    assert float(low.lam) == 0.0 and float(high.lam) == 100.0


def test_pid_dual_update_by_hand():
    gains = jnp.array([2.0, 0.5, 1.0])
    state = _dual(lam=5.0, integral=0.2, prev_error=0.05)
    up = duals.pid_step(state, jnp.asarray(0.7), jnp.asarray(0.8), gains,
                                jnp.asarray(0.02), 100.0, jnp.asarray(0.0))
    # e = 0.12; I = 0.2 + 0.12 = 0.32; D = max(0.12 - 0.05, 0) = 0.07;
    # λ = 2 · 0.12 + 0.5 · 0.32 + 1 · 0.07 = 0.24 + 0.16 + 0.07 = 0.47 (the old λ plays no part).
    assert float(up.integral) == pytest.approx(0.32, rel=1e-5)
    assert float(up.lam) == pytest.approx(0.47, rel=1e-5)
    # accuracy above target: e = 0.8 - 0.95 = -0.15; I = max(0.2 - 0.15, 0) = 0.05;
    # D = max(-0.15 - 0.05, 0) = 0; λ = max(2 (-0.15) + 0.5 · 0.05, 0) = max(-0.275, 0) = 0.
    up = duals.pid_step(state, jnp.asarray(0.95), jnp.asarray(0.8), gains,
                                jnp.asarray(0.0), 100.0, jnp.asarray(0.0))
    assert float(up.integral) == pytest.approx(0.05, rel=1e-5) and float(up.lam) == 0.0
    # anti-windup: the integral stops at λ_max / K_i = 10 / 0.5 = 20.
    up = duals.pid_step(_dual(integral=19.9), jnp.asarray(0.0), jnp.asarray(0.8), gains,
                                jnp.asarray(0.0), 10.0, jnp.asarray(0.0))
    assert float(up.integral) == pytest.approx(20.0) and float(up.lam) == pytest.approx(10.0)


def test_average_dual_by_hand():
    state = _dual(lam=2.0)._replace(lam_avg=jnp.asarray(1.0), acc_avg=jnp.asarray(0.8))
    avg = duals.average(state, jnp.asarray(0.9), jnp.asarray(0.9))
    # λ_avg = 0.9 · 1 + 0.1 · 2 = 1.1; acc_avg = 0.9 · 0.8 + 0.1 · 0.9 = 0.81.
    assert float(avg.lam_avg) == pytest.approx(1.1, rel=1e-6)
    assert float(avg.acc_avg) == pytest.approx(0.81, rel=1e-6)
    # avg = 0: the average is the last iterate.
    avg0 = duals.average(state, jnp.asarray(0.9), jnp.asarray(0.0))
    assert float(avg0.lam_avg) == 2.0 and float(avg0.acc_avg) == pytest.approx(0.9)


def test_dual_update_vmaps_over_lanes():
    lanes = jax.vmap(duals.init_dual)(jnp.array([1.0, 2.0]), jnp.array([0.7, 0.9]))
    up = jax.vmap(duals.plain_step, in_axes=(0, 0, 0, None, None, None, None))(
        lanes, jnp.array([0.8, 0.8]), jnp.array([0.7, 0.9]), jnp.asarray(1.0), jnp.asarray(0.0),
        100.0, jnp.asarray(0.0))
    # lane 0: 1 + (0.7 - 0.8) = 0.9; lane 1: 2 + (0.9 - 0.8) = 2.1.
    np.testing.assert_allclose(up.lam, [0.9, 2.1], rtol=1e-6)


def _update(settings, phase_step, batch_acc=0.7):
    return duals.update(settings, duals.init_dual(jnp.asarray(1.0), jnp.asarray(0.8)),
                        jnp.asarray(batch_acc), jnp.asarray(0.8), jnp.asarray(0.5),
                        jnp.asarray(0.02), jnp.asarray(phase_step, jnp.int32))


def test_update_before_averaging_takes_the_full_step_and_no_average():
    early = _update(SETTINGS, 9)
    # error = 0.8 + 0.02 - 0.7 = 0.12; λ = 1 + 0.5 · 0.12 = 1.06; avg 0 -> λ_avg = λ.
    assert float(early.lam) == pytest.approx(1.06, rel=1e-6)
    assert float(early.lam_avg) == pytest.approx(1.06, rel=1e-6)
    assert float(early.acc_avg) == pytest.approx(0.7, rel=1e-6)


def test_update_from_avg_start_shrinks_the_step_and_averages():
    late = _update(SETTINGS, 10)
    # step 0.5 · 0.2 = 0.1: λ = 1 + 0.1 · 0.12 = 1.012; λ_avg = 0.5 · 1 + 0.5 · 1.012 = 1.006;
    # acc_avg = 0.5 · 0.8 (started at τ) + 0.5 · 0.7 = 0.75.
    assert float(late.lam) == pytest.approx(1.012, rel=1e-6)
    assert float(late.lam_avg) == pytest.approx(1.006, rel=1e-6)
    assert float(late.acc_avg) == pytest.approx(0.75, rel=1e-6)


def test_update_pid_scales_the_gains_by_the_step():
    pid = SETTINGS._replace(kind="pid")
    early = _update(pid, 0)
    # gains = 0.5 · (2, 0.5, 1) = (1, 0.25, 0.5); e = I = D = 0.12:
    # λ = 0.12 + 0.25 · 0.12 + 0.5 · 0.12 = 0.21; avg 0 -> λ_avg = λ.
    assert float(early.lam) == pytest.approx(0.21, rel=1e-5)
    assert float(early.lam_avg) == pytest.approx(0.21, rel=1e-5)
    late = _update(pid, 10)
    # gains · 0.2 = (0.2, 0.05, 0.1): λ = 0.35 · 0.12 = 0.042; λ_avg = 0.5 · 1 + 0.5 · 0.042.
    assert float(late.lam) == pytest.approx(0.042, rel=1e-5)
    assert float(late.lam_avg) == pytest.approx(0.521, rel=1e-5)


def test_update_smooths_the_accuracy_with_the_ema():
    smooth = _update(SETTINGS._replace(ema=0.9), 0)
    # â = 0.9 · 0.8 + 0.1 · 0.7 = 0.79; error 0.03; λ = 1.015.
    assert float(smooth.acc_ema) == pytest.approx(0.79, rel=1e-6)
    assert float(smooth.lam) == pytest.approx(1.015, rel=1e-6)


def test_update_vmaps_over_lanes_with_a_shared_schedule():
    lanes = jax.vmap(duals.init_dual)(jnp.array([1.0, 2.0]), jnp.array([0.7, 0.9]))
    up = jax.vmap(lambda d, a, t: duals.update(SETTINGS, d, a, t, jnp.asarray(1.0),
                                               jnp.asarray(0.0), jnp.asarray(3, jnp.int32)))(
        lanes, jnp.array([0.8, 0.8]), jnp.array([0.7, 0.9]))
    np.testing.assert_allclose(up.lam, [0.9, 2.1], rtol=1e-6)
    np.testing.assert_allclose(up.lam_avg, [0.9, 2.1], rtol=1e-6)
