"""Tests for proteus.training.networks; expected numbers are worked out by hand in the comments."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus.training import networks
from tests import core_helpers

SPEC = core_helpers.TINY_SPEC  # 3 models, 6 features, hidden 16, policy hidden 16

# Jitted entry points: one compile each instead of dozens of eager op compiles per call site.
_policy_apply = jax.jit(SPEC.policy().apply)
_predict = jax.jit(networks.predict, static_argnums=0)
_predicted = jax.jit(networks.predicted, static_argnums=0)
_policy_beta = jax.jit(networks.policy_beta, static_argnums=0)


@pytest.fixture(scope="module")
def params():
    """One initialisation shared by the module (each eager init compiles dozens of ops)."""
    return core_helpers.init_params(SPEC, 0, core_helpers.tiny_stats())


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from numpy (cheaper than compiling a jax sampler per shape)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _zero_output_kernel(policy_params):
    """Policy params whose last layer ignores its input, so δ = 0 and k = softplus^-1(30)."""
    out = dict(policy_params["params"]["beta_params"])
    out["kernel"] = jnp.zeros_like(out["kernel"])
    return {"params": {**policy_params["params"], "beta_params": out}}


def test_predictor_shapes(params):
    x = jnp.ones((5, 6))
    z, logits, log_cost = networks.Predictor(3, hidden=16).apply(params["predictor"], x)
    chex.assert_shape(z, (5, 16))
    chex.assert_shape([logits, log_cost], (5, 3))
    assert bool(jnp.all(z >= 0.0))  # relu trunk


def test_policy_head_is_plug_in_prior_when_correction_is_zero(params):
    z = _normal(1, (4, 16))
    policy_params = _zero_output_kernel(params["policy"])
    alpha, beta = _policy_apply(policy_params, z, jnp.asarray(0.8), jnp.asarray(3.0))
    # δ = 0: m = sigmoid(log 3) = 3/4; K = softplus(softplus^-1(30)) + 1/m + 1/(1-m)
    #   = 30 + 4/3 + 4 = 35.3333; α = m K = 26.5, β = (1-m) K = 8.8333.
    np.testing.assert_allclose(alpha, np.full(4, 26.5), rtol=1e-5)
    np.testing.assert_allclose(beta, np.full(4, 35.0 + 1.0 / 3.0 - 26.5), rtol=1e-5)
    # λ = 0 is floored at 1e-3 inside the log: m = 1e-3 / 1.001 = 9.99e-4 (> the 1e-4 clip).
    alpha0, beta0 = _policy_apply(policy_params, z, jnp.asarray(0.8), jnp.asarray(0.0))
    np.testing.assert_allclose(alpha0 / (alpha0 + beta0), np.full(4, 1e-3 / 1.001), rtol=1e-4)


def test_policy_head_outputs_valid_beta_per_query(params):
    z = 3.0 * _normal(1, (64, 16))
    tau = jnp.linspace(0.5, 0.99, 64)  # per-query τ and λ are allowed too ([B])
    lam = jnp.linspace(0.0, 100.0, 64)
    alpha, beta = _policy_apply(params["policy"], z, tau, lam)
    chex.assert_shape([alpha, beta], (64,))
    assert bool(jnp.all(alpha >= 1.0)) and bool(jnp.all(beta >= 1.0))
    assert float(jnp.std(alpha / (alpha + beta))) > 0.0  # the init spread varies μ by query


def test_data_stats_by_hand():
    features = np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]], np.float32)
    costs = np.array([[1.0, 4.0], [3.0, 8.0], [2.0, 6.0]], np.float32)
    stats = networks.data_stats(features, costs)
    # column stds: sqrt(((-2)^2 + 0 + 2^2) / 3) = sqrt(8/3) = 1.63299 and 0; the floor is their
    # median (1.63299 + 0) / 2 = 0.81650, so the constant column is scaled by 0.8165, not 0.
    np.testing.assert_allclose(stats["mean"], [2.0, 5.0])
    np.testing.assert_allclose(stats["scale"], [math.sqrt(8 / 3), math.sqrt(8 / 3) / 2],
                               rtol=1e-6)
    np.testing.assert_allclose(stats["mean_cost"], [2.0, 6.0])  # (1+3+2)/3, (4+8+6)/3
    assert float(stats["c_ref"]) == pytest.approx(6.0)  # the dearest model's mean cost


def test_init_params_tree(params):
    assert set(params) == {"predictor", "policy", "stats", "calib"}
    # the calibration starts as the identity map: scale 1, no prior, no shift
    assert params["calib"]["scale"].tolist() == [1.0] * 3
    assert not np.any(params["calib"]["shift"]) and not np.any(params["calib"]["prior_weight"])
    assert set(params["predictor"]["params"]) == {"trunk_0", "trunk_1", "perf_head", "cost_head"}
    chex.assert_shape(params["predictor"]["params"]["trunk_0"]["kernel"], (6, 16))
    chex.assert_shape(params["policy"]["params"]["z_proj"]["kernel"], (16, 16))
    # the output bias starts at (δ = 0, k = softplus^-1(30) = 30 + log(1 - e^-30) ≈ 30).
    np.testing.assert_allclose(params["policy"]["params"]["beta_params"]["bias"], [0.0, 30.0],
                               atol=1e-5)


def test_predict_standardises_features(params):
    params = {**params}
    params["stats"] = {**params["stats"], "mean": jnp.full(6, 2.0), "scale": jnp.full(6, 4.0)}
    features = _normal(2, (6, 6))
    z, p_hat, log_c = _predict(SPEC, params, features)
    apply = jax.jit(SPEC.predictor().apply)
    z_ref, logits_ref, log_c_ref = apply(params["predictor"], (features - 2.0) / 4.0)
    np.testing.assert_allclose(z, z_ref, rtol=1e-6)
    np.testing.assert_allclose(p_hat, jax.nn.sigmoid(logits_ref), rtol=1e-6)
    np.testing.assert_allclose(log_c, log_c_ref, rtol=1e-6)
    assert bool(jnp.all((p_hat > 0.0) & (p_hat < 1.0)))


def test_predicted_cost_head_and_static_ablation(params):
    features = _normal(2, (6, 6))
    _, _, log_c = _predict(SPEC, params, features)
    _, _, c_hat = _predicted(SPEC, params, features)
    np.testing.assert_allclose(c_hat, jnp.exp(log_c), rtol=1e-6)
    static = SPEC._replace(static_cost=True)
    _, _, c_static = _predicted(static, params, features)
    np.testing.assert_allclose(c_static, np.tile([1.0, 2.0, 3.0], (6, 1)))  # stats mean_cost


def test_policy_beta_detaches_trunk_and_honours_ablations(params):
    z = _normal(3, (5, 16))

    def mean_alpha(z_in, spec):
        return networks.policy_beta(spec, params["policy"], z_in, jnp.asarray(0.9),
                                    jnp.asarray(2.0))[0].sum()

    grad = jax.jit(jax.grad(mean_alpha), static_argnums=1)(z, SPEC)
    np.testing.assert_array_equal(grad, np.zeros((5, 16)))

    def alpha_at(spec, tau, lam):
        return _policy_beta(spec, params["policy"], z, jnp.asarray(tau, jnp.float32),
                            jnp.asarray(lam, jnp.float32))[0]

    assert not np.allclose(alpha_at(SPEC, 0.6, 2.0), alpha_at(SPEC, 0.95, 2.0))
    no_tau = SPEC._replace(use_tau_input=False)
    np.testing.assert_array_equal(alpha_at(no_tau, 0.6, 2.0), alpha_at(no_tau, 0.95, 2.0))
    no_lam = SPEC._replace(use_lambda_input=False)
    np.testing.assert_array_equal(alpha_at(no_lam, 0.9, 0.5), alpha_at(no_lam, 0.9, 20.0))


def test_routing_rule_by_hand():
    p_hat = jnp.array([[0.5, 0.9, 0.95]] * 4)
    c_norm = jnp.array([[0.1, 0.3, 1.0]] * 4)
    mu = jnp.array([0.0, 1.0, 0.5, 0.9])
    # μ = 0: utility = -ĉ -> cheapest, model 0.
    # μ = 1: utility = p̂ -> most accurate, model 2.
    # μ = 0.5: 0.5 (p̂ - ĉ) = (0.2, 0.3, -0.025) -> model 1.
    # μ = 0.9: 0.9 p̂ - 0.1 ĉ = (0.44, 0.78, 0.755) -> model 1.
    np.testing.assert_array_equal(networks.routing_rule(mu, p_hat, c_norm), [0, 2, 1, 1])
    assert networks.routing_rule(mu, p_hat, c_norm).dtype == jnp.int32
    with pytest.raises(AssertionError):
        networks.routing_rule(mu[:, None], p_hat, c_norm)


def test_lambda_of_tau_by_hand():
    taus = jnp.array([0.6, 0.8])
    lane_lams = jnp.array([0.099, 9.999])  # log(λ + 1e-3) = log 0.1 and log 10
    got = networks.lambda_of_tau(taus, lane_lams, jnp.array([0.5, 0.6, 0.7, 0.75, 0.8, 0.95]))
    # clamped below: 0.099; at the lanes: 0.099, 9.999; midpoint: exp((log .1 + log 10) / 2)
    # - 1e-3 = 1 - 1e-3; at 3/4 of the way: exp(-.25 log 10 + .75 log 10) - 1e-3
    # = sqrt(10) - 1e-3 = 3.16128; clamped above: 9.999.
    np.testing.assert_allclose(got, [0.099, 0.099, 0.999, math.sqrt(10) - 1e-3, 9.999, 9.999],
                               rtol=1e-5)
    # A lane at λ = 0: log(1e-3); halfway to a lane at 0.999 (log 1 = 0): exp(log(1e-3) / 2)
    # - 1e-3 = 0.0316228 - 0.001 = 0.0306228; at that lane itself exactly 0.
    got0 = networks.lambda_of_tau(taus, jnp.array([0.0, 0.999]), jnp.array([0.6, 0.7]))
    np.testing.assert_allclose(got0, [0.0, math.sqrt(1e-3) - 1e-3], atol=1e-7, rtol=1e-5)
    # Shape follows τ.
    chex.assert_shape(networks.lambda_of_tau(taus, lane_lams, jnp.full((2, 3), 0.7)), (2, 3))


def test_route_is_routing_rule_at_beta_mean(params):
    features = _normal(4, (7, 6))
    tau = jnp.full((7,), 0.9)
    lam = jnp.linspace(0.0, 10.0, 7)
    decision = jax.jit(networks.route, static_argnums=0)(SPEC, params, features, tau, lam)
    chex.assert_shape([decision.model, decision.mu], (7,))
    chex.assert_shape([decision.p_hat, decision.c_hat], (7, 3))
    z, p_hat, c_hat = _predicted(SPEC, params, features)
    alpha, beta = _policy_beta(SPEC, params["policy"], z, tau, lam)
    np.testing.assert_allclose(decision.mu, alpha / (alpha + beta), rtol=1e-6)
    expected = networks.routing_rule(alpha / (alpha + beta), p_hat, c_hat / 3.0)  # c_ref = 3
    np.testing.assert_array_equal(decision.model, expected)
    np.testing.assert_array_equal(decision.lam, lam)  # λ travels with the decision
    assert decision.tau is None and decision.point is None  # serving adds the operating point
    given = networks.route_predicted(SPEC, params, (z, p_hat, c_hat), tau, lam)
    np.testing.assert_array_equal(given.model, expected)
    np.testing.assert_allclose(given.mu, decision.mu, rtol=1e-6)


def test_task_logits_index_the_table_and_unknown_is_zero():
    spec = core_helpers.spec_for(2, 3, folds=1, groups=0, tasks=2)
    calib = {"task_prior": jnp.float32([[0.5, -0.5], [1.0, 2.0], [0.0, 0.0]])}
    got = networks.task_logits(spec, calib, jnp.int32([1, -1, 0]), 3)
    np.testing.assert_array_equal(got, [[1.0, 2.0], [0.0, 0.0], [0.5, -0.5]])
    np.testing.assert_array_equal(networks.task_logits(spec, calib, None, 2), np.zeros((2, 2)))
    assert networks.task_logits(spec._replace(tasks=0), calib, None, 2) is None
    plain = networks.init_params(spec._replace(tasks=0), jax.random.key(0),
                                 networks.data_stats(np.zeros((2, 3)), np.ones((2, 2))))
    assert "task_weight" not in plain["calib"]  # runs without tasks keep their parameter tree


def test_calibrated_stacks_scale_prior_shift_and_the_task_term_by_hand():
    calib = {"scale": jnp.float32([2.0, 1.0]), "shift": jnp.float32([0.5, -1.0]),
             "prior_weight": jnp.float32([1.0, 0.0])}
    logits = jnp.float32([[0.0, 1.0], [1.0, 0.0]])
    prior = jnp.float32([[-0.5, 3.0], [-2.5, 0.0]])
    # row 0: (2·0 + 1·(−0.5) + 0.5, 1·1 + 0·3 − 1) = (0, 0) -> (0.5, 0.5)
    # row 1: (2·1 + 1·(−2.5) + 0.5, 0 + 0 − 1) = (0, −1) -> (0.5, sigmoid(−1) = 0.268941)
    calibrated = jax.jit(networks.calibrated)
    np.testing.assert_allclose(calibrated(calib, logits, prior),
                               [[0.5, 0.5], [0.5, 0.268941]], rtol=1e-5)
    task = jnp.float32([[math.log(3.0), 0.0], [0.0, 1.0]])
    # no "task_weight": the task logits are ignored
    np.testing.assert_allclose(calibrated(calib, logits, prior, task),
                               calibrated(calib, logits, prior))
    with_task = {**calib, "task_weight": jnp.float32([1.0, 2.0])}
    # row 0: (0 + log 3, 0 + 0) -> (3/4, 1/2); row 1: (0 + 0, −1 + 2·1) -> (1/2, sigmoid(1))
    np.testing.assert_allclose(calibrated(with_task, logits, prior, task),
                               [[0.75, 0.5], [0.5, 1.0 - 0.268941]], rtol=1e-5)


def test_task_rows_send_unknown_tasks_to_the_zero_row():
    spec = SPEC._replace(tasks=3)  # table rows 0, 1, 2 and the unknown row 3
    np.testing.assert_array_equal(networks.task_rows(spec, jnp.int32([-1, 0, 2, 1, -1])),
                                  [3, 0, 2, 1, 3])


_SMALL = SPEC._replace(hidden=2, policy_hidden=2)  # z [B, 2] -> projection [B, 2]


def _hand_policy_params() -> dict:
    """_SMALL's policy parameters, all zero but the z-projection [[1, 2], [3, 4]] + (0.5, −0.5)
    and the output bias (0, softplus^-1(30)) init gives: so δ = 0 and k = softplus^-1(30)."""
    z = jnp.zeros((1, 2))
    shapes = jax.eval_shape(_SMALL.policy().init, jax.random.key(0), z, jnp.zeros(()),
                            jnp.zeros(()))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)["params"]
    params["z_proj"] = {"kernel": jnp.float32([[1.0, 2.0], [3.0, 4.0]]),
                        "bias": jnp.float32([0.5, -0.5])}
    params["beta_params"]["bias"] = jnp.float32([0.0, math.log(math.expm1(30.0))])
    return {"params": params}


def test_policy_projection_is_the_z_layer_and_detaches_the_trunk():
    policy = _hand_policy_params()
    z = jnp.float32([[1.0, 2.0], [0.0, -1.0]])
    project = lambda z_in: networks.policy_projection(_SMALL, policy, z_in)
    projection, grad = jax.jit(lambda z_in: (project(z_in),
                                             jax.grad(lambda x: project(x).sum())(z_in)))(z)
    # [1, 2] @ [[1, 2], [3, 4]] = [7, 10], + bias -> [7.5, 9.5];
    # [0, −1] @ W = [−3, −4], + bias -> [−2.5, −4.5]
    np.testing.assert_allclose(projection, [[7.5, 9.5], [-2.5, -4.5]])
    np.testing.assert_array_equal(grad, np.zeros((2, 2)))  # the policy never trains the trunk


def test_policy_beta_from_projection_by_hand_and_under_the_ablations():
    policy = _hand_policy_params()
    projection = jnp.float32([[7.5, 9.5], [-2.5, -4.5], [0.0, 0.0]])

    @jax.jit
    def two_cases(projection):
        head = functools.partial(networks.policy_beta_from_projection, policy_params=policy,
                                 projection=projection)
        return (head(_SMALL, tau=jnp.full((3,), 0.8), lam=jnp.float32([1.0, 3.0, 0.0])),
                head(_SMALL._replace(use_lambda_input=False), tau=jnp.float32(0.8),
                     lam=jnp.float32(3.0)))

    (alpha, beta), (alpha_no_lam, beta_no_lam) = two_cases(projection)
    # δ = 0 (zero output kernel), so every row is the plug-in prior at its own λ:
    # λ = 1: m = sigmoid(log 1) = 1/2, K = 30 + 2 + 2 = 34 -> α = β = 17
    # λ = 3: m = 3/4, K = 30 + 4/3 + 4 -> α = 26.5, β = 8.8333
    # λ = 0, floored at 1e-3: m = 1e-3 / 1.001, and α = m K = 30 m + 1 + m / (1 − m)
    #   = 1.0309700, β = 30 (1 − m) + (1 − m) / m + 1 = 1030.97003
    np.testing.assert_allclose(alpha, [17.0, 26.5, 1.0309700], rtol=1e-5)
    np.testing.assert_allclose(beta, [17.0, 35.0 + 1.0 / 3.0 - 26.5, 1030.97003], rtol=1e-5)
    # one lane's scalar (τ, λ) broadcast over the rows, under the no-λ ablation: the head sees
    # λ = 0 instead of 3, so every row is the λ = 0 case above
    np.testing.assert_allclose(alpha_no_lam, np.full(3, 1.0309700), rtol=1e-5)
    np.testing.assert_allclose(beta_no_lam, np.full(3, 1030.97003), rtol=1e-5)


def test_policy_inputs_zero_what_an_ablation_hides():
    tau, lam = jnp.asarray([0.7, 0.9]), jnp.asarray([2.0, 5.0])
    for use_tau, use_lam in ((True, True), (False, True), (True, False), (False, False)):
        spec = SPEC._replace(use_tau_input=use_tau, use_lambda_input=use_lam)
        tau_in, lam_in = networks.policy_inputs(spec, tau, lam)
        np.testing.assert_array_equal(tau_in, tau if use_tau else [0.0, 0.0])
        np.testing.assert_array_equal(lam_in, lam if use_lam else [0.0, 0.0])
        assert tau_in.shape == lam_in.shape == (2,)
    tau_in, lam_in = networks.policy_inputs(SPEC._replace(use_tau_input=False),
                                            jnp.float32(0.8), jnp.float32(3.0))
    assert (float(tau_in), float(lam_in)) == (0.0, 3.0) and tau_in.shape == ()
