import pytest

torch = pytest.importorskip("torch")

from hashsdk.train.losses import LOG2, RealLoss, fake_loss  # noqa: E402
from hashsdk.train.model import create_model  # noqa: E402


@pytest.mark.parametrize("form", ["entropy", "uniform-ce"])
def test_fake_loss_is_zero_with_zero_gradient_at_one_half(form):
    h = torch.zeros(4, 12, requires_grad=True)  # p = (h + 1) / 2 = 1/2
    loss = fake_loss(h, form)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert h.grad.abs().max().item() < 1e-6


@pytest.mark.parametrize("form", ["entropy", "uniform-ce"])
def test_fake_loss_grows_as_bits_grow_confident(form):
    values = [fake_loss(torch.full((3, 8), v), form).item() for v in (0.0, 0.2, 0.5, 0.9, 0.99)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    # symmetric: a confident 0 costs the same as a confident 1
    assert fake_loss(torch.full((1, 4), -0.7), form).item() == pytest.approx(
        fake_loss(torch.full((1, 4), 0.7), form).item())


def test_entropy_form_is_bounded_and_uniform_ce_is_not():
    assert fake_loss(torch.full((1, 4), 0.999999), "entropy").item() <= LOG2 + 1e-6
    assert fake_loss(torch.full((1, 4), 0.999999), "uniform-ce").item() > 5.0


def test_fake_loss_formulas_match_their_definitions():
    h = torch.tensor([[0.6, -0.2]])
    p = (h + 1) / 2
    kl_p_half = (p * torch.log(2 * p) + (1 - p) * torch.log(2 * (1 - p))).mean()
    kl_half_p = (0.5 * torch.log(0.5 / p) + 0.5 * torch.log(0.5 / (1 - p))).mean()
    assert fake_loss(h, "entropy").item() == pytest.approx(kl_p_half.item(), rel=1e-5)
    assert fake_loss(h, "uniform-ce").item() == pytest.approx(kl_half_p.item(), rel=1e-5)


@pytest.mark.parametrize("name, memory", [("pairwise", False), ("pairwise", True),
                                          ("triplet", False), ("ce", False)])
def test_each_real_loss_decreases_on_a_tiny_batch(name, memory):
    torch.manual_seed(0)
    x = torch.randn(16, 3, 16, 16)
    y = torch.arange(16) % 4
    model = create_model("cnn", 12, num_classes=4 if name == "ce" else 0)
    loss_fn = RealLoss(name, 0.1, margin=4.0, train_labels=y, bits=12, memory=memory)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        h, logits = model(x, with_logits=True) if name == "ce" else (model(x), None)
        loss = loss_fn(h, y, logits, torch.arange(16))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_multi_label_similarity():
    from hashsdk.train.losses import similarity

    a = torch.tensor([[1, 0, 1], [0, 1, 0]])
    assert similarity(a, a).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert similarity(torch.tensor([1, 2]), torch.tensor([2, 1, 1])).tolist() == \
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]


def test_frozen_bn_statistics_leaves_running_stats_alone():
    from hashsdk.train.loop import frozen_bn_statistics

    model = create_model("cnn", 8).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with frozen_bn_statistics(model):
        model(torch.randn(4, 3, 16, 16) * 5 + 3)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    model(torch.randn(4, 3, 16, 16) * 5 + 3)  # outside, they move again
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.features.stem[1].momentum == 0.1
