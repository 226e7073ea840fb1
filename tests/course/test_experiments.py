"""attnkit.experiments against closed forms, with tolerances from the sampling distribution."""

import math

import pytest
import torch

from attnkit import experiments as E
from attnkit.softmax import softmax_jacobian

Z = 5.0  # a measured variance must lie within Z standard errors of the closed form


def within_se(measured, theory, se, z=Z):
    return abs(measured - theory) <= z * se


@pytest.mark.parametrize("scaled, expected", [(False, 64.0), (True, 1.0)])
def test_variance_dk64_100k_samples(scaled, expected):
    """The chapter's headline numbers: about 64 unscaled, about 1 scaled."""
    n = 100_000
    measured = E.dot_product_variance(64, n, scaled=scaled, seed=0)
    se = E.dot_product_variance_se(64, n, scaled=scaled)
    assert E.dot_product_variance_theory(64, scaled=scaled) == expected
    assert within_se(measured, expected, se), (measured, expected, se)
    # the standard error is small enough that "about 64" and "about 1" mean something
    assert se < (0.3 if not scaled else 0.005)


def test_se_closed_form_values():
    # Var(s^2) for N(0, 64)-like sums: mu4 = 6d + 3d^2, so SE ~ sqrt((2 d^2 + 6 d) / n)
    assert math.isclose(
        E.dot_product_variance_se(64, 100_000),
        math.sqrt((2 * 64**2 + 6 * 64) / 100_000),
        rel_tol=1e-4,
    )
    assert math.isclose(
        E.dot_product_variance_se(64, 100_000, scaled=True),
        math.sqrt((2 + 6 / 64) / 100_000),
        rel_tol=1e-4,
    )


@pytest.mark.parametrize("d_k", [1, 3, 16, 128, 512])
@pytest.mark.parametrize("scaled", [False, True])
def test_variance_sweep_matches_theory(d_k, scaled):
    out = E.variance_sweep([d_k], 4000, scaled=scaled, seed=d_k)
    theory = d_k if not scaled else 1.0
    assert out["theory"] == [theory]
    assert within_se(out["measured"][0], theory, out["se"][0])


def test_scaled_samples_are_unscaled_divided_by_sqrt_dk():
    a = E.dot_products(32, 1000, scaled=False, seed=7)
    b = E.dot_products(32, 1000, scaled=True, seed=7)
    torch.testing.assert_close(b * math.sqrt(32), a)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(d_k=8, scaled=False),
        dict(d_k=8, scaled=True, std=2.0),
        dict(d_k=16, scaled=True, qk_norm=True, std=3.0),
        dict(d_k=4, scaled=True, temperature=0.5),
    ],
)
def test_standard_error_formula_matches_the_spread_over_seeds(kwargs):
    """The SE formula is itself a closed form: check it against 300 independent repetitions."""
    d_k = kwargs.pop("d_k")
    n, reps = 400, 300
    estimates = torch.tensor(
        [E.dot_product_variance(d_k, n, seed=s, **kwargs) for s in range(reps)]
    )
    predicted = E.dot_product_variance_se(d_k, n, **kwargs)
    # the sample std of 300 estimates has a relative error of about 1/sqrt(2*299) ~ 4% (more for
    # heavy tails); 25% is far outside it yet rejects a formula off by a factor sqrt(2) or more
    assert abs(float(estimates.std()) / predicted - 1) < 0.25
    # and the mean of the estimates is the theory, within its own standard error
    assert within_se(
        float(estimates.mean()),
        E.dot_product_variance_theory(d_k, **kwargs),
        predicted / math.sqrt(reps),
    )


@pytest.mark.parametrize("std", [0.5, 2.0])
def test_non_unit_variance_breaks_the_scaling(std):
    n = 20_000
    measured = E.dot_product_variance(64, n, scaled=True, std=std, seed=1)
    theory = std**4  # d_k std^4 / d_k
    assert E.dot_product_variance_theory(64, scaled=True, std=std) == theory
    assert within_se(measured, theory, E.dot_product_variance_se(64, n, scaled=True, std=std))
    assert abs(measured - 1.0) > 20 * E.dot_product_variance_se(64, n, scaled=True)  # clearly not 1


@pytest.mark.parametrize("std", [0.1, 1.0, 5.0])
def test_qk_norm_restores_unit_variance_whatever_the_std(std):
    n, d = 20_000, 64
    measured = E.dot_product_variance(d, n, scaled=True, std=std, qk_norm=True, seed=2)
    theory = d / (d - 1)
    assert math.isclose(
        E.dot_product_variance_theory(d, scaled=True, std=std, qk_norm=True), theory
    )
    assert within_se(measured, theory, E.dot_product_variance_se(d, n, scaled=True, qk_norm=True))


def test_qk_norm_vectors_have_mean_zero_and_norm_sqrt_dk():
    q, k = E.sample_qk(10, 50, std=7.0, qk_norm=True, seed=3)
    torch.testing.assert_close(q.mean(-1), torch.zeros(50, dtype=q.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(k.norm(dim=-1), torch.full((50,), math.sqrt(10), dtype=k.dtype))


def test_temperature_divides_the_variance_by_t_squared():
    a = E.dot_products(16, 2000, scaled=True, seed=4)
    b = E.dot_products(16, 2000, scaled=True, temperature=2.0, seed=4)
    torch.testing.assert_close(b * 2.0, a)
    assert E.dot_product_variance_theory(16, scaled=True, temperature=2.0) == 0.25


def test_seeded_and_pure():
    state = torch.get_rng_state()
    a = E.dot_products(8, 300, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert torch.equal(a, E.dot_products(8, 300, seed=5))
    assert not torch.equal(a, E.dot_products(8, 300, seed=6))
    assert torch.equal(E.attention_rows(8, 5, 3, seed=1), E.attention_rows(8, 5, 3, seed=1))


def test_histogram_density_and_normal_pdf():
    h = E.dot_product_histogram(32, 20_000, bins=40, scaled=True, seed=0)
    width = float(h["edges"][1] - h["edges"][0])
    # +-4 sd holds all but ~6e-5 of a normal: the density integrates to about 1
    assert abs(float(h["density"].sum()) * width - 1) < 2e-3
    normal = torch.distributions.Normal(0.0, math.sqrt(h["theory"]))
    torch.testing.assert_close(h["pdf"], normal.log_prob(h["centers"]).exp())
    # and the histogram is close to the normal density (CLT); each bin's density has a
    # binomial standard error sqrt(p (1 - p) / n) / width
    p = h["pdf"] * width
    se = torch.sqrt(p * (1 - p) / 20_000) / width
    assert (torch.abs(h["density"] - h["pdf"]) <= 6 * se + 0.01).all()


def test_attention_rows_are_softmax_of_the_sampled_scores():
    d, L, n = 8, 5, 4
    rows = E.attention_rows(d, L, n, scaled=True, std=2.0, seed=9)
    g = torch.Generator().manual_seed(9)  # the documented draw: q (n, 1, d), then k (n, L, d)
    q, k = 2.0 * torch.randn(n, 1, d, generator=g), 2.0 * torch.randn(n, L, d, generator=g)
    scores = (q @ k.transpose(-2, -1)).squeeze(1).double() / math.sqrt(d)  # (n, L)
    torch.testing.assert_close(rows, torch.softmax(scores, -1))
    torch.testing.assert_close(rows.sum(-1), torch.ones(n, dtype=rows.dtype))
    normed = E.attention_rows(d, L, n, scaled=True, std=2.0, qk_norm=True, seed=9)
    ln = torch.nn.functional.layer_norm
    q_n, k_n = ln(q, (d,), eps=0.0), ln(k, (d,), eps=0.0)
    torch.testing.assert_close(normed, torch.softmax((q_n @ k_n.transpose(-2, -1)).squeeze(1).double() / math.sqrt(d), -1))


def test_entropy_against_torch_categorical():
    p = torch.softmax(
        torch.randn(6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3, -1
    )
    torch.testing.assert_close(E.entropy(p), torch.distributions.Categorical(probs=p).entropy())
    assert str(float(E.entropy(torch.tensor([0.0, 1.0, 0.0])))) == "0.0"  # not "-0.0" in a table
    assert math.isclose(float(E.entropy(torch.full((8,), 1 / 8, dtype=torch.float64))), math.log(8))


def test_row_stats_against_explicit_jacobians():
    p = E.attention_rows(16, 6, 20, scaled=False, seed=2)
    s = E.row_stats(p)
    explicit = torch.linalg.matrix_norm(softmax_jacobian(p)).mean()
    assert math.isclose(s["jacobian_norm"], float(explicit), rel_tol=1e-9)
    assert math.isclose(s["max_weight"], float(p.max(-1).values.mean()))


def test_saturation_grows_with_dk_unscaled_and_not_scaled():
    d_ks = [4, 64, 1024]
    un = E.saturation_sweep(d_ks, 16, 400, scaled=False, seed=0)
    sc = E.saturation_sweep(d_ks, 16, 400, scaled=True, seed=0)
    # unscaled: the largest weight climbs towards 1 and the Jacobian norm collapses
    assert un["max_weight"][0] < un["max_weight"][1] < un["max_weight"][2]
    assert un["jacobian_norm"][0] > un["jacobian_norm"][1] > un["jacobian_norm"][2]
    assert un["jacobian_norm"][2] < 0.3 * un["jacobian_norm"][0]
    # scaled: the same statistics hardly move (within 15%)
    for key in ("max_weight", "jacobian_norm", "entropy"):
        assert max(sc[key]) < 1.15 * min(sc[key])


def test_dk_snapshot_holds_what_the_widget_draws():
    a = E.dk_snapshot(16, False, n_samples=2000, seq_len=8, bins=20)
    b = E.dk_snapshot(16, True, n_samples=2000, seq_len=8, bins=20)
    assert a["row"].shape == (8,) and math.isclose(float(a["row"].sum()), 1.0)
    assert a["max_weight"] == float(a["row"].max())
    assert a["theory"] == 16 and b["theory"] == 1
    assert a["mean_max_weight"] > b["mean_max_weight"]


def test_temperature_sweep_and_snapshot():
    scores = torch.tensor([2.3, 9.1, 0.5])
    out = E.temperature_sweep(scores, [0.0, 0.5, 1.0, 4.0, 1e6])
    for T, p in zip(out["temperature"][1:], out["probs"][1:], strict=True):
        torch.testing.assert_close(p, torch.softmax(scores.double() / T, -1))
    assert out["entropy"] == sorted(out["entropy"])  # hotter = flatter
    assert (
        out["entropy"][0] == 0.0 and out["max_weight"][0] == 1.0 and out["jacobian_norm"][0] == 0.0
    )
    assert math.isclose(out["entropy"][-1], math.log(3), rel_tol=1e-6)
    snap = E.temperature_snapshot(scores, 2.0)
    assert snap["argmax"] == 1 and snap["hard"].tolist() == [0.0, 1.0, 0.0]
    assert math.isclose(snap["max_entropy"], math.log(3))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: E.dot_products(0, 10), ValueError, "d_k must be >= 1, got 0"),
        (lambda: E.dot_products(1, 10, qk_norm=True), ValueError, "d_k must be >= 2, got 1"),
        (lambda: E.dot_products(8.0, 10), TypeError, "d_k must be an int, got float"),
        (
            lambda: E.dot_products(8, 10, std=-1.0),
            ValueError,
            "std must be a finite number > 0, got -1.0",
        ),
        (
            lambda: E.dot_products(8, 10, temperature=0),
            ValueError,
            "temperature must be a finite number > 0",
        ),
        (
            lambda: E.temperature_sweep(torch.zeros(2, 2), [1.0]),
            ValueError,
            r"scores must be a 1-D tensor \(n,\), got \(2, 2\)",
        ),
        (
            lambda: E.entropy([0.5, 0.5]),
            TypeError,
            "p must be a floating-point torch.Tensor, got list",
        ),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
