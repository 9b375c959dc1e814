"""Training without labels: the edits, a flat folder as data, the config's label-free rules,
ITQ fitted into the network, Bi-half, and the whole path from a flat folder to an Encoder."""

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_cifar
from PIL import Image

from hashsdk import HashsdkError
from hashsdk.edits import EDITS, apply

torch = pytest.importorskip("torch")

from hashsdk.train import config  # noqa: E402
from hashsdk.train.data import load_dataset, make_split  # noqa: E402


def photo(seed=0, size=(120, 90)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BICUBIC)


def test_each_edit_is_deterministic_and_does_what_it_says():
    image = photo()
    for name in EDITS:
        a = apply(name, image, np.random.default_rng(5))
        b = apply(name, image, np.random.default_rng(5))
        assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b)), name
    w, h = image.size
    rng = np.random.default_rng(0)
    for _ in range(20):
        cw, ch = apply("crop", image, rng).size
        assert 0.79 * w <= cw <= 0.96 * w and 0.79 * h <= ch <= 0.96 * h
    assert apply("pad", image, rng).size == (round(w * 1.2), round(h * 1.2))
    assert apply("resize", image, rng).size == (w // 2, h // 2)
    assert np.array_equal(np.asarray(apply("flip", image, rng)),
                          np.asarray(image)[:, ::-1])
    assert not np.array_equal(np.asarray(apply("text", image, rng)), np.asarray(image))
    with pytest.raises(HashsdkError, match="unknown edit 'sepia'"):
        apply("sepia", image, rng)


def flat_folder(path, n=25):
    path.mkdir()
    for i in range(n):
        photo(i).save(path / f"img{i:02d}.jpg", quality=95)
    return path


def test_a_trimming_run_loads_framed_photos_as_their_originals(tmp_path):
    """data.trim (on by default without labels) cuts each file's frame before fitting: a
    folder of framed photos (PNG: exact pixels) loads as the folder of the photos alone, and
    the decoded cache is kept apart from an untrimmed run's."""
    plain, framed = tmp_path / "plain", tmp_path / "framed"
    plain.mkdir(), framed.mkdir()
    for i in range(6):
        photo(i).save(plain / f"img{i}.png")
        apply("pad", photo(i), np.random.default_rng(i)).save(framed / f"img{i}.png")
    common = dict(dataset="imagefolder", image_size=32, cache_dir=str(tmp_path / "cache"))
    trimmed = load_dataset(config.DataConfig(root=str(framed), trim=True, **common), False)
    whole = load_dataset(config.DataConfig(root=str(plain), trim=True, **common), False)
    untrimmed = load_dataset(config.DataConfig(root=str(framed), trim=False, **common), False)
    assert np.array_equal(trimmed.images[:6], whole.images[:6])
    assert not np.array_equal(untrimmed.images[:6], trimmed.images[:6])
    assert len(list((tmp_path / "cache").glob("imagefolder-*-trim-*.npz"))) == 2


def test_a_flat_folder_loads_as_unlabelled_with_edited_copies_as_queries(tmp_path):
    folder = flat_folder(tmp_path / "flat")
    cfg = config.DataConfig(dataset="imagefolder", root=str(folder), image_size=32,
                            cache_dir=str(tmp_path / "cache"))
    data = load_dataset(cfg, progress=False)
    assert not data.labeled and data.classes == tuple(f"img{i:02d}.jpg" for i in range(25))
    originals, copies = np.flatnonzero(~data.is_test), np.flatnonzero(data.is_test)
    assert originals.tolist() == list(range(25)) and len(copies) == 5  # a fifth
    assert data.labels[originals].tolist() == list(range(25))
    split = make_split(data, cfg)
    assert split.query.tolist() == copies.tolist()
    assert split.train.tolist() == split.database.tolist() == originals.tolist()
    # each copy is an edit of its original: nearer to it than to the other originals
    x = data.images.reshape(len(data.images), -1).astype(np.float32)
    for q in copies[[0, 2, 3]]:  # blur, gamma, noise: edits that keep the geometry
        d = np.abs(x[originals] - x[q]).mean(axis=1)
        assert d.argmin() == data.labels[q]
    again = load_dataset(cfg, progress=False)  # through the cache
    assert not again.labeled and np.array_equal(again.labels, data.labels)


def test_the_config_decides_and_refuses_label_free_runs(tmp_path):
    folder = flat_folder(tmp_path / "flat", n=3)
    flat = {"dataset": "imagefolder", "root": str(folder)}
    cfg = config.from_dict({"data": flat})
    assert cfg.hash.loss == config.LABEL_FREE_LOSS and cfg.hash.frozen
    assert config.from_dict({"data": flat, "hash": {"loss": "itq"}}).hash.loss == "itq"
    with pytest.raises(HashsdkError, match="holds images and no class folders; use --labels"):
        config.from_dict({"data": flat | {"labels": "folders"}})
    with pytest.raises(HashsdkError, match="'pairwise' needs labels.*losses: itq, edit-itq"):
        config.from_dict({"data": {"labels": "none"}, "hash": {"loss": "pairwise"}})
    assert config.from_dict({"data": flat, "hash": {"loss": "contrastive"}}).hash.frozen
    fine = config.from_dict({"data": flat, "hash": {"loss": "contrastive", "frozen": False}})
    assert fine.hash.loss == "contrastive" and not fine.hash.frozen  # the one that can
    with pytest.raises(HashsdkError, match="'bihalf' trains on frozen features"):
        config.from_dict({"data": flat, "hash": {"loss": "bihalf", "frozen": False}})
    with pytest.raises(HashsdkError, match="trains on frozen features: add --frozen"):
        config.from_dict({"hash": {"loss": "bihalf"}})
    labelled = config.from_dict({"data": {"labels": "none"}})  # CIFAR-10, labels unused
    assert labelled.hash.loss == config.LABEL_FREE_LOSS and labelled.hash.frozen
    assert config.from_dict({}).hash.loss == "pairwise" and not config.from_dict({}).hash.frozen


def test_itq_is_fitted_into_the_network_bit_for_bit(tmp_path):
    """The frozen network's bits equal PCA-ITQ's (train/baselines.py) on the same features."""
    from hashsdk.train.baselines import fit
    from hashsdk.train.evaluate import encode
    from hashsdk.train.loop import train_hash
    from hashsdk.train.model import HashNet

    data = synthetic_cifar(8, 2)
    cfg = config.from_dict({"data": {"queries_per_class": 2, "train_per_class": 8,
                                     "labels": "none", "cache_dir": str(tmp_path / "c")},
                            "hash": {"backbone": "cnn", "bits": 16, "loss": "itq",
                                     "device": "cpu"}})
    split = make_split(data, cfg.data)
    result = train_hash(cfg, data, split, tmp_path / "run", progress=False)
    model = HashNet.from_checkpoint(tmp_path / "run" / "checkpoint.pt")[0]
    feats = encode(model, data.images, torch.device("cpu"), features=True)
    itq = fit("itq", feats[split.train].astype(np.float64), 16, cfg.hash.seed)
    want = itq.encode(feats) > 0
    got = encode(model, data.images, torch.device("cpu")) > 0
    assert (got == want).mean() > 0.999  # float32 against float64 at the sign's edge
    assert 0 < result["map"] <= 1


def test_bihalf_splits_each_bit_in_half_and_passes_gradients_through():
    from hashsdk.train.losses.unsupervised import bihalf

    h = torch.randn(10, 6, requires_grad=True)
    b = bihalf(h)
    hard = b.detach().round()  # h + (hard - h) is hard up to float rounding
    assert torch.allclose(b.detach(), hard) and set(hard.unique().tolist()) == {-1.0, 1.0}
    assert (hard.sum(dim=0) == 0).all()  # five +1 and five -1 in each bit
    fifth = h.detach().sort(dim=0).values[4]  # the largest of each bit's lower half
    assert ((hard > 0) == (h.detach() > fifth)).all()
    b.sum().backward()
    assert torch.equal(h.grad, torch.ones_like(h))


def test_bihalf_loss_pairs_the_batch_halves_against_the_raw_feature_cosines():
    """Oracle: for each i of the first half, (cos(b_i, b_{i+half}) - cos(f_i, f_{i+half}))^2,
    averaged; an odd batch's last item sits out; a batch of one is refused."""
    from hashsdk.train.losses.real import LossOptions
    from hashsdk.train.losses.unsupervised import BiHalf, bihalf

    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(20, 7, generator=gen)  # non-negative, as pooled activations are
    loss = BiHalf(LossOptions(train_features=feats))
    h = torch.randn(9, 6, generator=gen)
    index = torch.tensor([3, 1, 4, 15, 9, 2, 6, 5, 19])
    b = bihalf(h)
    want = np.mean([(float(b[i] @ b[i + 4]) / 6 - float(
        feats[index[i]] @ feats[index[i + 4]] / feats[index[i]].norm()
        / feats[index[i + 4]].norm())) ** 2 for i in range(4)])
    assert float(loss(h, None, None, index)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(HashsdkError, match="batch of at least 2"):
        loss(h[:1], None, None, index[:1])


@pytest.mark.parametrize("loss, extra", [("itq", []), ("contrastive", []),
                                         ("contrastive", ["--finetune", "--epochs", "2",
                                                          "--flip-average"])])
def test_a_flat_folder_trains_exports_and_encodes_without_labels(tmp_path, loss, extra):
    from click.testing import CliRunner

    from hashsdk import Encoder
    from hashsdk.export.onnx_export import export_onnx
    from hashsdk.train import cli

    folder = flat_folder(tmp_path / "flat", n=20)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli.main, [
        "hash", "--dataset", "imagefolder", "--root", str(folder), "--run-dir", str(run),
        "--bits", "16", "--backbone", "cnn", "--loss", loss, "--image-size", "32", "--quiet",
        *extra])
    assert result.exit_code == 0, result.output
    frozen = "--finetune" not in extra  # without labels, frozen unless told
    how = "on the frozen features of" if frozen else "fine-tuning"
    assert f"training without labels: {loss} {how} cnn" in result.output
    assert "copy detection (4 edited copies searching their originals): mAP" in result.output
    ckpt = run / "hash-nofakes" / "checkpoint.pt"
    export_onnx(ckpt, tmp_path / "m.onnx")
    encoder = Encoder(str(tmp_path / "m.onnx"))
    assert encoder.metadata.extra["training"] == {"loss": loss, "labels": "none",
                                                  "frozen_features": frozen,
                                                  "flip_average": "--flip-average" in extra,
                                                  "mirror_invariant": "--flip-average" not in
                                                  extra,
                                                  "input_blur": config.LABEL_FREE_BLUR,
                                                  "feature_block": -1,
                                                  "input_median": 0,
                                                  "feature_pool": "avg",
                                                  "dct_features": 0,
                                                  "training_edits": None if loss == "itq"
                                                  else "uniform",
                                                  "koleo": config.LABEL_FREE_KOLEO if
                                                  loss == "contrastive" and frozen else 0.0}
    codes = encoder.encode(sorted(folder.iterdir()))
    assert codes.shape == (20, 2)
    # the graph averages the two looks (flip averaging's outputs, or by default without labels
    # the features): mirror images, one code
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32)))
                       for p in sorted(folder.iterdir())])
    assert np.array_equal(encoder.encode(pixels),
                          encoder.encode(np.ascontiguousarray(pixels[:, :, ::-1])))


def test_labels_none_on_a_labelled_run_still_scores_with_the_labels(tmp_path):
    from hashsdk.train.loop import train_hash

    data = synthetic_cifar(8, 2)
    cfg = config.from_dict({"data": {"queries_per_class": 2, "train_per_class": 8,
                                     "labels": "none", "cache_dir": str(tmp_path / "c")},
                            "hash": {"backbone": "cnn", "bits": 16, "device": "cpu",
                                     "epochs": 3}})
    assert cfg.hash.loss == config.LABEL_FREE_LOSS
    split = make_split(data, cfg.data)
    assert len(split.query) == 20  # the class protocol, not edited copies
    result = train_hash(cfg, data, split, tmp_path / "run", progress=False)
    assert 0 < result["map"] <= 1
    cfg2 = dataclasses.replace(cfg, hash=dataclasses.replace(cfg.hash, loss="itq"))
    assert train_hash(cfg2, data, split, tmp_path / "run2", progress=False)["map"] > 0


def test_edit_invariant_directions_avoid_what_the_edits_move():
    """Images spread over 6 dimensions; the edits move only the first 3 (strongly): the 3
    directions chosen lie in the other 3, where PCA would pick the edited ones."""
    from hashsdk.train.frozen import invariant_directions

    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)) * np.array([3, 3, 3, 1, 1, 1])
    noise = np.zeros((800, 6))
    noise[:, :3] = rng.standard_normal((800, 3)) * 6  # the edits outweigh those images' spread
    p = invariant_directions(x, noise, 3)
    p /= np.linalg.norm(p, axis=0)
    assert np.abs(p[:3]).max() < 0.1 and np.abs(p[3:]).sum(axis=0).min() > 0.9


def test_edited_views_come_from_their_sources():
    from hashsdk.encoder.contract import InputContract
    from hashsdk.train.edited import EDIT_VIEWS, edited_views

    images = synthetic_cifar(2, 0).images[:6]
    views, source = edited_views(images, InputContract(32, 3, 32), seed=1)
    assert views.shape == (6 * EDIT_VIEWS, 32, 32, 3) and views.dtype == np.uint8
    assert source.tolist() == [i for i in range(6) for _ in range(EDIT_VIEWS)]
    again, _ = edited_views(images, InputContract(32, 3, 32), seed=1)
    assert np.array_equal(views, again)


def test_weighted_training_edits_draw_the_hard_edits_three_times_as_often():
    from hashsdk.train.edited import TRAINING_EDITS, draw_edit

    rng = np.random.default_rng(0)
    counts = {name: 0 for name in EDITS}
    for _ in range(16000):
        counts[draw_edit(rng, "weighted")] += 1
    heavy = TRAINING_EDITS["weighted"]
    total = sum(heavy.get(name, 1.0) for name in EDITS)  # 3 * 3 + 7 * 1
    for name, count in counts.items():
        assert count / 16000 == pytest.approx(heavy.get(name, 1.0) / total, abs=0.015), name
    # uniform draws as before the weights: one integer a draw, so a seed's copies are the same
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [draw_edit(a) for _ in range(50)] == [list(EDITS)[b.integers(len(EDITS))]
                                                 for _ in range(50)]
    with pytest.raises(HashsdkError, match="uniform, weighted"):
        draw_edit(rng, "hard")
    with pytest.raises(HashsdkError, match="training_edits"):
        config.from_dict({"hash": {"training_edits": "hard"}})
    assert config.from_dict({}).hash.training_edits == "uniform"


@pytest.mark.parametrize("channels", [3, 1])
def test_an_edit_that_keeps_the_frame_does_not_zoom_the_copy(monkeypatch, channels):
    """A training copy is edited at a photo's size and scaled back whole: under a contract
    that crops (96 of 109, the photo recipe's), a mirrored copy is the image mirrored, not a
    zoomed centre of it, and it keeps the image's shape and channels."""
    from hashsdk import edits
    from hashsdk.encoder.contract import InputContract
    from hashsdk.train.edited import edit_image

    monkeypatch.setattr(edits, "EDITS", {"flip": edits.EDITS["flip"]})
    yy, xx = np.mgrid[0:96, 0:96] / 95.0  # smooth, so that scaling up and back loses little
    image = np.stack([200 * xx + 20, 120 * yy + 60 * xx, 255 * xx * yy], -1)[..., :channels]
    image = image.round().astype(np.uint8)
    copy = edit_image(image, InputContract(96, channels, 109, "bicubic"),
                      np.random.default_rng(0))
    assert copy.shape == image.shape and copy.dtype == np.uint8
    assert np.abs(copy.astype(int) - image[:, ::-1].astype(int)).mean() < 1.5


def test_the_contrastive_loss_is_least_when_each_image_meets_its_own_copy():
    from hashsdk.train.losses.real import LossOptions
    from hashsdk.train.losses.unsupervised import Contrastive

    loss = Contrastive(LossOptions())
    h = torch.tanh(torch.randn(16, 32, generator=torch.Generator().manual_seed(0)) * 2)
    matched = loss(torch.cat([h, h]), None, None, None)
    shuffled = loss(torch.cat([h, h[torch.roll(torch.arange(16), 1)]]), None, None, None)
    assert matched < shuffled
    # the copies' pull: a copy moved toward its image lowers the loss
    noisy = torch.tanh(torch.atanh(h * 0.999) + torch.randn(16, 32) * 2)
    assert loss(torch.cat([h, (h + noisy) / 2]), None, None, None) < loss(
        torch.cat([h, noisy]), None, None, None)
    with pytest.raises(HashsdkError, match="one copy of each"):
        loss(h[:15], None, None, None)


def test_koleo_is_minus_the_mean_log_distance_to_the_nearest_other_row():
    """The KoLeo term against a brute-force loop; it falls as rows spread apart; the
    contrastive loss adds it times hash.koleo, on the images' outputs alone (not the copies')."""
    from hashsdk.train.losses.real import LossOptions
    from hashsdk.train.losses.unsupervised import Contrastive, koleo

    z = torch.nn.functional.normalize(torch.randn(7, 5, generator=torch.Generator()
                                                  .manual_seed(1)), dim=1)
    want = -np.mean([np.log(min(float((z[i] - z[j]).norm()) for j in range(7) if j != i))
                     for i in range(7)])
    assert float(koleo(z)) == pytest.approx(want, rel=1e-5)
    crowded = torch.nn.functional.normalize(z + 3 * torch.ones(5), dim=1)
    assert float(koleo(crowded)) > float(koleo(z))
    h = torch.tanh(torch.randn(8, 6, generator=torch.Generator().manual_seed(2)))
    copies = torch.tanh(torch.randn(8, 6, generator=torch.Generator().manual_seed(3)))
    both = torch.cat([h, copies])
    plain, spread = Contrastive(LossOptions()), Contrastive(LossOptions(koleo=0.5))
    extra = float(spread(both, None, None, None)) - float(plain(both, None, None, None))
    assert extra == pytest.approx(0.5 * float(koleo(torch.nn.functional.normalize(h, dim=1))),
                                  rel=1e-5)
    with pytest.raises(HashsdkError, match="at least 2"):
        koleo(z[:1])


def test_koleo_takes_a_weight_beside_the_contrastive_loss_only():
    base = config.RunConfig()
    with pytest.raises(HashsdkError, match="hash.koleo"):
        config.validate(dataclasses.replace(base, hash=dataclasses.replace(
            base.hash, loss="pairwise", koleo=1.0)))
    with pytest.raises(HashsdkError, match="hash.koleo"):
        config.validate(dataclasses.replace(base, hash=dataclasses.replace(
            base.hash, loss="contrastive", koleo=-1.0)))


class _Head(torch.nn.Module):  # what _train_head trains of a HashNet: its hash layer
    def __init__(self, dim, bits):
        super().__init__()
        self.hash, self.classifier = torch.nn.Linear(dim, bits), None


def test_the_contrastive_head_learns_what_edits_leave_alone():
    """Images spread over 8 dimensions, the first 4 widely; their copies move strongly along
    those 4 only. The trained codes of the copies agree with their images' where ITQ's (PCA,
    so the wide, edited dimensions) do not, and the images still use every code."""
    from hashsdk.train.frozen import EDIT_VIEWS, _train_head, centre_bits, fit_itq

    rng = np.random.default_rng(0)
    n, bits = 512, 4
    x = (rng.standard_normal((n, 8)) * np.array([3, 3, 3, 3, 1, 1, 1, 1])).astype(np.float32)
    views = np.repeat(x, EDIT_VIEWS, axis=0)
    views[:, :4] += rng.standard_normal((len(views), 4)).astype(np.float32) * 3
    hc = config.HashConfig(bits=bits, loss="contrastive", epochs=30, batch_size=128, lr=0.01,
                           warmup_epochs=0, lam=0.0)

    def agreement(model):
        with torch.no_grad():
            a = model.hash(torch.from_numpy(x)) > 0
            b = model.hash(torch.from_numpy(views[::EDIT_VIEWS])) > 0
        return (a == b).float().mean().item(), len(torch.unique(a, dim=0))

    torch.manual_seed(0)  # the head's initialization, else whatever tests ran before left
    model = _Head(8, bits)
    _train_head(hc, model, x, np.arange(n), None, torch.device("cpu"), False, views)
    centre_bits(model, x, torch.device("cpu"))
    itq = _Head(8, bits)
    fit_itq(dataclasses.replace(hc, loss="itq"), itq, x)
    (learned, distinct), (baseline, _) = agreement(model), agreement(itq)
    # 0.93 to 0.997 over twelve initializations of the head, ITQ 0.76
    assert learned > 0.9 and learned > baseline + 0.15
    assert distinct == 2 ** bits  # the images spread over every code, not one for all


def _contrastive_run(tmp_path, **hash_options):
    data = synthetic_cifar(8, 2)
    cfg = config.from_dict({"data": {"queries_per_class": 2, "train_per_class": 8,
                                     "labels": "none", "cache_dir": str(tmp_path / "c")},
                            "hash": {"backbone": "cnn", "bits": 16, "loss": "contrastive",
                                     "device": "cpu", "frozen": False} | hash_options})
    assert not cfg.hash.frozen
    return cfg, data, make_split(data, cfg.data)


def test_the_fine_tuning_loop_adds_an_edited_copy_of_each_image(tmp_path):
    """A loss that needs_views gets the batch, then one edited copy of each image in the same
    order: exactly train/edited.py's edit_batch of the batch, drawn from the run's seeded
    augmentation generator."""
    from hashsdk.train.device import Distributed, take
    from hashsdk.train.edited import edit_batch
    from hashsdk.train.evaluate import to_input
    from hashsdk.train.loop import _batch, _build
    from hashsdk.train.schedule import fit_schedule

    cfg, data, split = _contrastive_run(tmp_path, augment=False, batch_size=8, epochs=1)
    cpu = torch.device("cpu")
    r = _build(fit_schedule(cfg.hash, len(split.train)), cfg.data, data, split, cpu,
               Distributed.start(cpu))
    idx = torch.arange(8)
    before = r.aug_gen.get_state()
    x, _, _, _, _ = _batch(r, idx)
    originals = take(r.train_x, idx, cpu)
    g = torch.Generator()
    g.set_state(before)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
    want = torch.from_numpy(edit_batch(originals.numpy(), r.model.contract, rng))
    assert x.shape == (16, 3, 32, 32)
    assert torch.equal(x[:8], to_input(originals, r.scale, r.offset))
    assert torch.equal(x[8:], to_input(want, r.scale, r.offset))
    assert not torch.equal(x[8:], x[:8])
    assert not torch.equal(_batch(r, idx)[0][8:], x[8:])  # fresh edits every batch


def test_fine_tuned_contrastive_codes_split_each_bit_in_half(tmp_path):
    """After fine-tuning, each bit's threshold sits at the median of the training images'
    outputs (as in frozen-feature mode), in the saved network that export takes."""
    from hashsdk.train.evaluate import encode
    from hashsdk.train.loop import train_hash
    from hashsdk.train.model import HashNet

    cfg, data, split = _contrastive_run(tmp_path, epochs=2, batch_size=16)
    result = train_hash(cfg, data, split, tmp_path / "run", progress=False)
    assert 0 < result["map"] <= 1
    model = HashNet.from_checkpoint(tmp_path / "run" / "checkpoint.pt")[0]
    bits = encode(model, data.images[split.train], torch.device("cpu")) > 0
    # the median image itself may land on either side by a float rounding
    assert np.abs(bits.sum(axis=0) - len(split.train) / 2).max() <= 1


def test_frozen_and_finetune_are_one_setting(tmp_path):
    from click.testing import CliRunner

    from hashsdk.train import cli

    folder = flat_folder(tmp_path / "flat", n=3)
    result = CliRunner().invoke(cli.main, [
        "hash", "--dataset", "imagefolder", "--root", str(folder), "--run-dir",
        str(tmp_path / "run"), "--frozen", "--finetune"])
    assert result.exit_code == 2 and "--frozen and --finetune: give one" in result.output
