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
                                          ("triplet", False), ("ce", False), ("csq", False),
                                          ("orthohash", False)])
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


def test_codewords_spread_as_far_as_they_can():
    from hashsdk.train.losses.codewords import codewords, targets

    words = codewords(10, 16)  # Hadamard rows and their negatives
    d = (words[:, None, :] != words[None, :, :]).sum(-1)
    off = d[~torch.eye(10, dtype=torch.bool)]
    assert set(off.tolist()) <= {8, 16} and (words.abs() == 1).all()
    assert torch.equal(words, codewords(10, 16, rule="hadamard"))  # the rules agree there
    # the sylvester rule at 12 bits (no power of two): random +-1, seeded, the same twice
    random = codewords(10, 12, rule="sylvester")
    assert torch.equal(random, codewords(10, 12, rule="sylvester")) and len(
        {tuple(r) for r in random.tolist()}) == 10
    # multi-hot labels: the sign of the mean of their classes' codewords
    multi = targets(words[:3], torch.tensor([[1, 1, 0], [0, 0, 1]]))
    assert torch.equal(multi[1], words[2])
    mean = (words[0] + words[1]) / 2
    assert torch.equal(multi[0], torch.where(mean >= 0, 1.0, -1.0))


def min_distance(words: torch.Tensor) -> int:
    d = (words[:, None, :] != words[None, :, :]).sum(-1)
    return int(d[~torch.eye(len(words), dtype=torch.bool)].min())


@pytest.mark.parametrize("n", [2, 4, 12, 20, 24, 40, 44, 48, 60, 96])
def test_hadamard_matrices_are_hadamard(n):
    from hashsdk.train.losses.codewords import hadamard

    h = hadamard(n)
    assert (h.abs() == 1).all() and torch.equal(h @ h.T, n * torch.eye(n))


def test_hadamard_orders_it_cannot_build_and_bad_paley_orders():
    from hashsdk.errors import HashsdkError
    from hashsdk.train.losses.codewords import hadamard, paley

    assert hadamard(36) is None and hadamard(6) is None  # no construction here for them
    with pytest.raises(HashsdkError, match="prime q = 3 mod 4"):
        paley(13)


@pytest.mark.parametrize("bits,spread", [(12, 6), (24, 12), (48, 24), (36, 16), (40, 20)])
def test_hadamard_codewords_spread_every_pair(bits, spread):
    from hashsdk.train.losses.codewords import codewords

    words = codewords(10, bits, rule="hadamard")
    assert words.shape == (10, bits) and (words.abs() == 1).all()
    # 36 bits: a Hadamard block of order 32 (16 apart) and 4 random columns
    assert min_distance(words) >= spread
    # none of these lengths is a power of two: the earlier rule's random rows spread less
    assert min_distance(words) > min_distance(codewords(10, bits, rule="sylvester"))
    assert torch.equal(words, codewords(10, bits, rule="hadamard"))


def test_codeword_rule_reaches_the_losses_and_rejects_unknown_rules():
    from hashsdk.errors import HashsdkError
    from hashsdk.train.losses.codewords import codewords

    y = torch.arange(10)
    for rule in ("hadamard", "sylvester"):
        oh = RealLoss("orthohash", 0.0, train_labels=y, bits=12, codewords=rule)
        assert torch.equal(torch.sign(oh.loss.words), codewords(10, 12, rule=rule))
        csq = RealLoss("csq", 0.0, train_labels=y, bits=12, codewords=rule)
        assert torch.equal(csq.loss.centres, codewords(10, 12, rule=rule))
    with pytest.raises(HashsdkError, match="codewords: expected one of"):
        RealLoss("orthohash", 0.0, train_labels=y, bits=12, codewords="gold")


@pytest.mark.parametrize("name", ["csq", "orthohash"])
def test_codeword_losses_are_least_at_the_own_codeword(name):
    from hashsdk.train.losses.codewords import codewords

    y = torch.tensor([0, 1, 2, 3])
    loss_fn = RealLoss(name, 0.0, train_labels=y, bits=16)
    words = codewords(4, 16)
    own = loss_fn(0.95 * words[y], y, None)
    other = loss_fn(0.95 * words[(y + 1) % 4], y, None)
    assert own < other
    torch.manual_seed(0)
    h0 = (0.3 * torch.randn(4, 16)).requires_grad_()
    loss_fn(h0, y, None).backward()
    # a step of gradient descent turns each code towards its own codeword
    h1 = h0.detach() - 0.1 * h0.grad / h0.grad.norm(dim=1, keepdim=True)
    cos = torch.nn.functional.cosine_similarity
    assert (cos(h1, words[y]) > cos(h0.detach(), words[y])).all()
    multi = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0]])
    assert torch.isfinite(RealLoss(name, 0.1, train_labels=multi, bits=16)(
        torch.tanh(torch.randn(2, 16)), multi, None))


def test_orthohash_label_smoothing_matches_its_definition():
    from hashsdk.train.losses.codewords import codewords
    from hashsdk.train.losses.orthohash import MARGIN, SCALE

    torch.manual_seed(0)
    y, eps = torch.tensor([0, 1, 2, 3, 1]), 0.2
    h = torch.tanh(torch.randn(5, 16))
    words = torch.nn.functional.normalize(codewords(4, 16), dim=1)
    cos = torch.nn.functional.normalize(h, dim=1) @ words.T
    logp = torch.log_softmax(SCALE * (cos - MARGIN * torch.eye(4)[y]), dim=1)
    # the target (1 - eps) one-hot + eps / K, written out
    want = -((1 - eps) * logp[torch.arange(5), y] + eps / 4 * logp.sum(1)).mean()
    got = RealLoss("orthohash", 0.0, train_labels=y, bits=16, label_smoothing=eps)(h, y, None)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    plain = RealLoss("orthohash", 0.0, train_labels=y, bits=16)(h, y, None)
    assert plain.item() != pytest.approx(got.item(), rel=1e-3)


def test_mixed_cross_entropy_is_the_cross_entropy_of_the_mixed_label():
    from hashsdk.train.mix import Mix

    torch.manual_seed(0)
    y = torch.tensor([0, 2, 1, 3, 2, 0])
    logits, h = torch.randn(6, 4), torch.tanh(torch.randn(6, 8))
    mix = Mix(0.7, torch.arange(5, -1, -1))
    got = RealLoss("ce", 0.0)(h, y, logits, mix=mix)
    soft = 0.7 * torch.eye(4)[y] + 0.3 * torch.eye(4)[y.flip(0)]  # timm's soft target
    want = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # lam 1 is the plain loss; the quantization term is counted once
    q = RealLoss("orthohash", 0.5, train_labels=y, bits=8)
    assert q(h, y, None, mix=Mix(1.0, mix.partner)).item() == pytest.approx(
        q(h, y, None).item(), rel=1e-6)


def test_losses_refuse_smoothing_and_mixing_they_cannot_take():
    from hashsdk.errors import HashsdkError
    from hashsdk.train.mix import Mix

    with pytest.raises(HashsdkError, match="class logits, not 'csq'"):
        RealLoss("csq", 0.0, train_labels=torch.arange(4), bits=8, label_smoothing=0.1)
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(HashsdkError, match="pairwise loss cannot score mixed"):
        RealLoss("pairwise", 0.0)(torch.zeros(4, 8), y, None, mix=Mix(0.5, y.flip(0)))


def test_mixup_is_the_convex_mix_with_the_mirrored_rows():
    from hashsdk.train.mix import mix_batch

    x = torch.randn(5, 3, 8, 8)
    out, mix = mix_batch(x, torch.Generator().manual_seed(1), mixup=0.4, cutmix=0.0)
    assert 0 <= mix.lam <= 1 and mix.partner.tolist() == [4, 3, 2, 1, 0]
    assert torch.allclose(out, mix.lam * x + (1 - mix.lam) * x.flip(0))
    again, mix2 = mix_batch(x, torch.Generator().manual_seed(1), mixup=0.4, cutmix=0.0)
    assert torch.equal(out, again) and mix2.lam == mix.lam  # the run's generator decides
    assert mix_batch(x, torch.Generator(), 0.0, 0.0) == (x, None)
    assert mix_batch(x[:1], torch.Generator(), 1.0, 1.0)[1] is None


def test_cutmix_pastes_one_box_and_weighs_by_the_area_left():
    from hashsdk.train.mix import mix_batch

    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 16, 12).clone()
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        out, mix = mix_batch(x, gen, mixup=0.0, cutmix=1.0)
        for i in range(4):
            pasted = out[i] == x[mix.partner[i]]
            kept = out[i] == x[i]
            assert (pasted | kept).all()
            # pasted pixels form one box, the same in every channel
            rows, cols = pasted[0].any(1).nonzero(), pasted[0].any(0).nonzero()
            if len(rows):
                box = pasted[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1]
                assert box.all() and pasted[0].sum() == box.numel()
                assert torch.equal(pasted[0], pasted[1])
            # lam is the share of the image left its own
            assert mix.lam == pytest.approx(1 - pasted[0].float().mean().item())


def test_with_both_on_each_batch_takes_mixup_or_cutmix():
    from hashsdk.train.mix import mix_batch

    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 8, 8).clone()
    gen, kinds = torch.Generator().manual_seed(0), set()
    for _ in range(30):
        out, _ = mix_batch(x, gen, mixup=1.0, cutmix=1.0)
        whole = bool(torch.isin(out, x).all())  # cutmix moves whole pixel values
        kinds.add("cutmix" if whole else "mixup")
    assert kinds == {"cutmix", "mixup"}
