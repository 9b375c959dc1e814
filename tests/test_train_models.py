import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hashsdk import HashsdkError  # noqa: E402
from hashsdk.train import baselines  # noqa: E402
from hashsdk.train.model import HashNet, create_model  # noqa: E402


@pytest.mark.parametrize("name, size, channels", [("cnn", 32, 3), ("cnn", 32, 1),
                                                  ("resnet18", 32, 3), ("resnet18", 32, 1),
                                                  ("alexnet", 64, 3), ("vgg11_bn", 32, 3)])
def test_backbone_batch_matches_one_image_at_a_time(name, size, channels):
    # the brute-force reference: each image on its own through the same network, in eval mode
    torch.manual_seed(0)
    model = create_model(name, 24, in_channels=channels, image_size=size).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        batch = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(3)])
    assert batch.shape == (3, 24) and batch.abs().max() < 1
    assert torch.allclose(batch, single, atol=1e-5)
    rebuilt = HashNet(**model.model_args)  # the model rebuilds from model_args alone
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), batch)


def test_mirror_invariant_features_are_the_mean_over_the_mirror_image_in_both_modes():
    # the oracle: the plain backbone's features of each image and of its mirror, averaged
    torch.manual_seed(0)
    plain = create_model("cnn", 16)
    mirror = HashNet(**dict(plain.model_args, mirror_invariant=True))
    mirror.load_state_dict(plain.state_dict())
    assert mirror.model_args["mirror_invariant"] and not plain.model_args["mirror_invariant"]
    assert not HashNet(**{k: v for k, v in plain.model_args.items()
                          if k != "mirror_invariant"}).mirror_invariant  # older checkpoints
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        plain.eval(), mirror.eval()
        expected = (plain.embed(x) + plain.embed(torch.flip(x, dims=[3]))) / 2
        assert torch.allclose(mirror.embed(x), expected, atol=1e-6)
        assert torch.allclose(mirror(x), torch.tanh(plain.hash(expected)), atol=1e-6)
        assert not torch.allclose(mirror(x), plain(x), atol=1e-3)  # the mirror counts
        for mode in (mirror.eval, mirror.train):  # one code for an image and its mirror
            mode()
            torch.manual_seed(1)
            a = mirror(x)
            torch.manual_seed(1)
            assert torch.allclose(mirror(torch.flip(x, dims=[3])), a, atol=1e-5)


def _gaussian_blur_oracle(x: "torch.Tensor", sigma: float) -> "torch.Tensor":
    # the brute force: each output pixel the Gaussian-weighted sum of its neighbours within 3
    # sigma, coordinates clamped at the edges, weights normalized to sum to 1
    n, c, h, w = x.shape
    r = max(1, int(np.ceil(3 * sigma)))
    out = torch.zeros_like(x)
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    weights = np.array([np.exp(-dy * dy / (2 * sigma ** 2)) * np.exp(-dx * dx / (2 * sigma ** 2))
                        for dy, dx in offsets])
    weights /= weights.sum()
    for (dy, dx), wt in zip(offsets, weights, strict=True):
        ys = np.clip(np.arange(h) + dy, 0, h - 1)
        xs = np.clip(np.arange(w) + dx, 0, w - 1)
        out += float(wt) * x[:, :, ys][:, :, :, xs]
    return out


def test_input_blur_low_passes_the_input_before_the_backbone_and_rebuilds():
    torch.manual_seed(0)
    plain = create_model("cnn", 16)
    blurred = HashNet(**dict(plain.model_args, input_blur=1.5))
    blurred.load_state_dict(plain.state_dict())  # the filter is no weight: same state dict
    assert blurred.model_args["input_blur"] == 1.5 and plain.model_args["input_blur"] == 0.0
    assert HashNet(**{k: v for k, v in plain.model_args.items()
                      if k != "input_blur"}).low_pass is None  # older checkpoints: no filter
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        plain.eval(), blurred.eval()
        low = blurred.low_pass(x)
        assert torch.allclose(low, _gaussian_blur_oracle(x, 1.5), atol=1e-5)
        assert low.std() < 0.35 * x.std()  # white noise mostly filtered out
        flat = torch.full((1, 3, 32, 32), 0.3)
        assert torch.allclose(blurred.low_pass(flat), flat, atol=1e-6)  # a flat image stays
        assert torch.allclose(blurred.embed(x), plain.embed(low), atol=1e-6)
        assert torch.allclose(blurred(x), torch.tanh(plain.hash(plain.embed(low))), atol=1e-6)
    for bad in (-1.0, 9.0, "2"):
        with pytest.raises(HashsdkError, match="input_blur: expected a sigma"):
            create_model("cnn", 16, input_blur=bad)


def test_flip_average_is_the_mean_over_the_mirror_image_in_eval_mode_only():
    # the oracle: the plain network on each image and on its mirror image, averaged
    torch.manual_seed(0)
    plain = create_model("cnn", 16)
    flip = HashNet(**dict(plain.model_args, flip_average=True))
    flip.load_state_dict(plain.state_dict())
    assert flip.model_args["flip_average"] and not plain.model_args["flip_average"]
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        plain.eval(), flip.eval()
        expected = (plain(x) + plain(torch.flip(x, dims=[3]))) / 2
        assert torch.allclose(flip(x), expected, atol=1e-6)
        assert not torch.allclose(flip(x), plain(x), atol=1e-3)  # the mirror counts
        mirror = torch.cat([x[..., :16], torch.flip(x[..., :16], dims=[3])], dim=3)
        assert torch.allclose(flip(mirror), plain(mirror), atol=1e-6)
        plain.train(), flip.train()  # training sees each image alone
        torch.manual_seed(1)
        a = plain(x)
        torch.manual_seed(1)
        assert torch.allclose(flip(x), a, atol=1e-6)


def test_model_errors():
    with pytest.raises(HashsdkError, match="unknown backbone 'vit'"):
        create_model("vit", 12)
    with pytest.raises(HashsdkError, match="at least 63 pixels"):
        create_model("alexnet", 12, image_size=32)
    with pytest.raises(HashsdkError, match="not found"):
        create_model("resnet18", 12, pretrained="/nonexistent.pth")


def test_pretrained_weights_file_is_loaded(tmp_path):
    import torchvision

    net = torchvision.models.resnet18()
    torch.nn.init.constant_(net.layer1[0].conv1.weight, 0.125)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    model = create_model("resnet18", 12, pretrained=str(tmp_path / "w.pth"))
    assert (model.features.layer1[0].conv1.weight == 0.125).all()


def clustered(n_per_class=60, classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * 4
    y = np.repeat(np.arange(classes), n_per_class)
    return centres[y] + rng.standard_normal((len(y), dim)), y


@pytest.mark.parametrize("method", baselines.METHODS)
def test_baselines_beat_random_codes_on_clustered_data(method):
    from hashsdk import mean_average_precision

    x, y = clustered()
    model = baselines.fit(method, x[::2], 8, seed=0)
    codes = model.encode(x)
    assert codes.shape == (len(x), 8)
    score = mean_average_precision(codes[1::2], codes, y[1::2], y)
    rng = np.random.default_rng(1)
    random = mean_average_precision(rng.standard_normal((len(x) // 2, 8)),
                                    rng.standard_normal((len(x), 8)), y[1::2], y)
    assert score > random + 0.2


def test_itq_rotation_is_orthogonal_and_lowers_quantization_error():
    x, _ = clustered(dim=32)
    model = baselines.fit("itq", x, 8)
    r = model.rotation
    assert np.allclose(r @ r.T, np.eye(8), atol=1e-8)
    v = (x - model.mean) @ model.pcs
    error = lambda rot: np.square(np.sign(v @ rot) - v @ rot).sum()  # noqa: E731
    assert error(r) < error(np.eye(8))


def test_sh_eigenfunctions_skip_the_constant_mode():
    x, _ = clustered()
    model = baselines.fit("sh", x, 6)
    assert model.modes.shape == (6, 6) and (model.modes.sum(axis=1) > 0).all()


def test_baseline_errors():
    with pytest.raises(HashsdkError, match="baseline must be one of"):
        baselines.fit("pq", np.zeros((4, 4)), 2)
    with pytest.raises(HashsdkError, match="bits <= feature dimension"):
        baselines.fit("itq", np.random.default_rng(0).standard_normal((10, 4)), 8)


def test_pca_baseline_is_the_sign_of_the_top_principal_components():
    from hashsdk.train import baselines

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 10))
    x[:, 7:] *= (10, 20, 40)  # three columns of clearly larger, distinct variances
    fitted = baselines.fit("pca", x, 3)
    codes = fitted.encode(x) > 0
    centred = x - x.mean(0)
    # the top components are the last three columns, up to sign
    for bit, column in zip(range(3), (9, 8, 7), strict=True):
        agree = (codes[:, bit] == (centred[:, column] > 0)).mean()
        assert agree > 0.97 or agree < 0.03


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_trivial_augment_is_reproducible_per_image_and_leaves_torch_s_stream_alone(dtype):
    from hashsdk.train.loop import trivial_augment

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (32, 24, 24, 3), dtype=np.uint8)).to(dtype)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    out = trivial_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(1), before)  # the global stream is where it was
    again = trivial_augment(x, torch.Generator().manual_seed(5))
    other = trivial_augment(x, torch.Generator().manual_seed(6))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, again) and not torch.equal(out, other)
    changed = (out.int() != x.round().int()).flatten(1).any(dim=1)
    assert changed.float().mean() > 0.5  # most operations alter an image


def test_the_augment_policy_is_a_checked_choice():
    from hashsdk.train import config

    cfg = config.from_dict({"hash": {"augment_policy": "trivial"}}, where="t")
    assert cfg.hash.augment_policy == "trivial"
    with pytest.raises(HashsdkError, match="augment_policy"):
        config.from_dict({"hash": {"augment_policy": "randaugment"}}, where="t")
    with pytest.raises(HashsdkError, match=r"hash.ema: expected a decay in \[0, 1\)"):
        config.from_dict({"hash": {"ema": 1.0}}, where="t")


def test_feature_block_hashes_one_blocks_pooled_output_and_rebuilds():
    # the oracle: the whole network run by hand to the end of block 2, then average-pooled
    torch.manual_seed(0)
    whole = create_model("timm/test_efficientnet", 16, image_size=32)
    cut = HashNet(**dict(whole.model_args, feature_block=2))
    cut.features.load_state_dict(whole.features.state_dict(), strict=False)
    assert cut.model_args["feature_block"] == 2 and whole.model_args["feature_block"] == -1
    assert len(cut.features.blocks) == 3 and cut.hash.in_features != whole.hash.in_features
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        whole.eval(), cut.eval()
        net = whole.features
        y = net.bn1(net.conv_stem(x))
        for block in net.blocks[:3]:
            y = block(y)
        assert torch.allclose(cut.embed(x), y.mean((2, 3)), atol=1e-5)
        rebuilt = HashNet(**cut.model_args)  # a checkpoint rebuilds the same cut
        rebuilt.load_state_dict(cut.state_dict())
        assert torch.equal(rebuilt.eval()(x), cut(x))
    with pytest.raises(HashsdkError, match="feature_block: expected -1 .* or 0 to 4"):
        HashNet(**dict(whole.model_args, feature_block=5))
    with pytest.raises(HashsdkError, match="feature_block takes the features of one block"):
        create_model("cnn", 16, feature_block=1)


def _median_oracle(x: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel's window (edges repeated) sorted in numpy, its middle value taken."""
    a, r = x.numpy(), size // 2
    b, c, h, w = a.shape
    out = np.empty_like(a)
    for i in range(h):
        for j in range(w):
            ys = np.clip(np.arange(i - r, i + r + 1), 0, h - 1)
            xs = np.clip(np.arange(j - r, j + r + 1), 0, w - 1)
            window = a[:, :, ys][:, :, :, xs].reshape(b, c, -1)
            out[:, :, i, j] = np.sort(window, axis=-1)[..., size * size // 2]
    return torch.from_numpy(out)


def test_input_median_filters_before_the_low_pass_filter_and_rebuilds():
    torch.manual_seed(0)
    plain = create_model("cnn", 16, input_blur=1.0)
    med = HashNet(**dict(plain.model_args, input_median=3))
    med.load_state_dict(plain.state_dict())  # the filter is no weight: same state dict
    assert med.model_args["input_median"] == 3 and plain.model_args["input_median"] == 0
    assert HashNet(**{k: v for k, v in plain.model_args.items()
                      if k != "input_median"}).median is None  # older checkpoints: none
    x = torch.randn(2, 3, 12, 13)
    with torch.no_grad():
        for size in (3, 5):
            filtered = HashNet(**dict(plain.model_args, input_median=size)).median(x)
            assert torch.equal(filtered, _median_oracle(x, size))
        # a one-pixel line of white on grey goes; a step edge stays where it was
        image = torch.full((1, 3, 16, 16), -0.2)
        image[:, :, 7, 2:14] = 1.0
        assert torch.equal(med.median(image), torch.full_like(image, -0.2))
        step = torch.zeros(1, 3, 16, 16)
        step[..., 8:] = 1.0
        assert torch.equal(med.median(step), step)
        x = torch.randn(3, 3, 32, 32)
        plain.eval(), med.eval()
        assert torch.allclose(med.embed(x), plain.embed(med.median(x)), atol=1e-6)
    for bad in (1, 4, 7, True, "3"):
        with pytest.raises(HashsdkError, match=r"input_median: expected one of \(0, 3, 5\)"):
            create_model("cnn", 16, input_median=bad)


def test_gem_pooling_is_the_generalized_mean_of_the_positive_part():
    # the oracle: the network run by hand to its last feature map, pooled by the formula
    from hashsdk.train.backbones import GEM_POWER

    torch.manual_seed(0)
    avg = create_model("timm/test_efficientnet", 16, image_size=32, feature_block=2)
    gem = HashNet(**dict(avg.model_args, feature_pool="gem"))
    gem.load_state_dict(avg.state_dict())
    assert gem.model_args["feature_pool"] == "gem" and avg.model_args["feature_pool"] == "avg"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        avg.eval(), gem.eval()
        net = gem.features
        y = net.bn1(net.conv_stem(x))
        for block in net.blocks:
            y = block(y)
        want = y.clamp(min=1e-6).pow(GEM_POWER).mean((2, 3)).pow(1 / GEM_POWER)
        assert torch.allclose(gem.embed(x), want, atol=1e-5)
        positive = y.clamp(min=1e-6)  # between the positive part's mean and its maximum
        assert (gem.embed(x) >= positive.mean((2, 3)) - 1e-5).all()
        assert (gem.embed(x) <= positive.amax((2, 3)) + 1e-5).all()
        assert torch.allclose(avg.embed(x), y.mean((2, 3)), atol=1e-5)
        rebuilt = HashNet(**gem.model_args)
        rebuilt.load_state_dict(gem.state_dict())
        assert torch.equal(rebuilt.eval()(x), gem(x))
    with pytest.raises(HashsdkError, match="hash.feature_pool: expected one of avg, gem"):
        create_model("timm/test_efficientnet", 16, image_size=32, feature_pool="max")
    from hashsdk.train.backbones import POOLINGS
    from hashsdk.train.config import CHOICES

    assert CHOICES[("hash", "feature_pool")] == ("avg", *POOLINGS)  # the CLI offers them all
    with pytest.raises(HashsdkError, match="feature_pool takes a timm backbone"):
        create_model("cnn", 16, feature_pool="gem")


def _dct_oracle(grey: np.ndarray, n: int) -> np.ndarray:
    """The n x n lowest frequencies of the orthonormal 2-D DCT-II of each (side, side) image,
    summed term by term from the definition."""
    side = grey.shape[-1]
    k = np.arange(side)
    scale = [np.sqrt(1 / side)] + [np.sqrt(2 / side)] * (side - 1)
    out = np.empty((len(grey), n, n))
    for u in range(n):
        for v in range(n):
            wave = np.outer(np.cos(np.pi * (2 * k + 1) * u / (2 * side)),
                            np.cos(np.pi * (2 * k + 1) * v / (2 * side)))
            out[:, u, v] = scale[u] * scale[v] * (grey * wave).sum((1, 2))
    return out


def test_dct_features_are_phashs_frequencies_appended_to_the_features():
    from hashsdk.train.model import DCT_SIDE

    torch.manual_seed(0)
    plain = create_model("cnn", 16, image_size=64)
    dct = HashNet(**dict(plain.model_args, dct_features=6))
    assert dct.model_args["dct_features"] == 6 and plain.model_args["dct_features"] == 0
    assert dct.hash.in_features == plain.hash.in_features + 35  # 6 x 6 but the constant
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        dct.features.load_state_dict(plain.features.state_dict())
        plain.eval(), dct.eval()
        grey = x.mean(1).unflatten(1, (DCT_SIDE, 2)).unflatten(3, (DCT_SIDE, 2)).mean((2, 4))
        want = _dct_oracle(grey.double().numpy(), 6).reshape(3, -1)[:, 1:]
        want /= np.sqrt((want ** 2).mean(1, keepdims=True))
        got = dct.embed(x)
        assert np.abs(got[:, -35:].numpy() - want).max() < 1e-4
        assert torch.allclose(got[:, :-35], plain.embed(x), atol=1e-6)
        # a change of contrast and brightness leaves them as they are
        assert torch.allclose(dct.dct(0.5 * x + 0.2), dct.dct(x), atol=1e-4)
        # mirror-invariant: the odd horizontal frequencies of the averaged features are 0
        mirror = HashNet(**dict(dct.model_args, mirror_invariant=True)).eval()
        coef = mirror.dct(x)
        single = torch.cat([coef, torch.zeros(3, 1)], 1).roll(1, 1).view(3, 6, 6)  # one look
        averaged = mirror.embed(x)[:, -35:]
        full = torch.cat([torch.zeros(3, 1), averaged], 1).view(3, 6, 6)
        assert full[:, :, 1::2].abs().max() < 1e-5
        assert torch.allclose(full[:, :, 0::2], single[:, :, 0::2], atol=1e-5)
    for bad in (1, 17, True, 2.0):
        with pytest.raises(HashsdkError, match="dct_features: expected 0 .* or n from 2 to 16"):
            create_model("cnn", 16, dct_features=bad)
