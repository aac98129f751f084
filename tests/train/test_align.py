"""`fakedet align` on a tiny AutoencoderKL built from a config (random weights, no download)."""

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from fakedet.cli import main  # noqa: E402
from fakedet.train import align, autoencoder  # noqa: E402

# sizes: multiples of the factor 4, and sides that are not (odd, prime, 1 short)
SIZES = [(16, 16), (17, 13), (23, 32), (31, 9)]


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4, sample_size=32,
    )
    d = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(d)
    return d


def _write_images(folder, sizes, ext="jpg"):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (w, h) in enumerate(sizes):
        p = folder / f"img{i}.{ext}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        names.append(p.name)
    return names


def _run(*args):
    return main(["align", "--quiet", "--device", "cpu", *map(str, args)])


def test_align_writes_paired_pngs_of_source_sizes(tiny_vae, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _write_images(src / "sub", SIZES)
    (src / "broken.jpg").write_bytes(b"not an image at all")
    rc = _run("--vae", tiny_vae, "--src", src, "--dst", dst, "--batch", 3)
    assert rc == 1  # one unreadable image: reported, run completes
    summary = json.loads((dst / "align_summary.json").read_text())
    assert summary["done"] == len(SIZES) and summary["skipped"] == 0
    assert [f["path"] for f in summary["failed"]] == [str(src / "broken.jpg")]
    assert summary["factor"] == 4
    for i, size in enumerate(SIZES):
        out = dst / "1_fake" / "sub" / f"img{i}.png"
        with Image.open(out) as im:
            assert im.format == "PNG" and im.size == size and im.mode == "RGB"
        real = dst / "0_real" / "sub" / f"img{i}.jpg"
        assert real.read_bytes() == (src / "sub" / f"img{i}.jpg").read_bytes()


def test_reconstruction_matches_manual_diffusers_pipeline(tiny_vae):
    """The pad/encode/sample/decode/crop path against a direct computation with diffusers."""
    ae = autoencoder.load_autoencoder(str(tiny_vae))
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)  # h=13, w=17: both padded to 16/20
    seed = align.image_seed(7, "1_fake/a.png")
    got = autoencoder.reconstruct(ae, [img], [seed], "sample")[0]

    padded = np.pad(img, ((0, 3), (0, 3), (0, 0)), mode="reflect")
    x = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        post = ae.model.encode(x).latent_dist
        g = torch.Generator().manual_seed(seed)
        z = post.mean + post.std * torch.randn(post.mean.shape[1:], generator=g)[None]
        y = ((ae.model.decode(z).sample / 2 + 0.5).clamp(0, 1)[0, :, :13, :17] * 255 + 0.5).floor()
    want = y.permute(1, 2, 0).to(torch.uint8).numpy()
    assert got.shape == img.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1

    # a fixed seed is reproducible; mean mode differs from a sample
    again = autoencoder.reconstruct(ae, [img], [seed], "sample")[0]
    np.testing.assert_array_equal(got, again)
    mean = autoencoder.reconstruct(ae, [img], [seed], "mean")[0]
    assert not np.array_equal(mean, got)


def test_batching_does_not_change_the_result(tiny_vae):
    ae = autoencoder.load_autoencoder(str(tiny_vae))
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (12, 20, 3), dtype=np.uint8) for _ in range(3)]
    seeds = [11, 12, 13]
    batched = autoencoder.reconstruct(ae, imgs, seeds)
    for img, s, b in zip(imgs, seeds, batched):
        one = autoencoder.reconstruct(ae, [img], [s])[0]
        assert np.abs(one.astype(int) - b.astype(int)).max() <= 1


def test_resume_redoes_only_missing_and_corrupt(tiny_vae, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = _write_images(src / "gen_a" / "0_real", SIZES, "png")
    _write_images(src / "gen_a" / "1_fake", [(8, 8)], "png")  # fakes in SRC are ignored
    fake_dir = dst / "gen_a" / "1_fake"

    # "interrupted" run: stops after 2 images
    assert _run("--vae", tiny_vae, "--src", src, "--dst", dst, "--limit", 2, "--batch", 1) == 0
    first = json.loads((dst / "align_summary.json").read_text())
    assert first["done"] == 2
    assert len(list(fake_dir.glob("*.png"))) == 2

    # finish, then damage outputs: one truncated, one of the wrong size, one deleted
    assert _run("--vae", tiny_vae, "--src", src, "--dst", dst) == 0
    second = json.loads((dst / "align_summary.json").read_text())
    assert (second["done"], second["skipped"]) == (len(SIZES) - 2, 2)
    outs = [fake_dir / n for n in names]
    data = outs[0].read_bytes()
    outs[0].write_bytes(data[: len(data) // 2])
    Image.new("RGB", (5, 5)).save(outs[1])
    outs[2].unlink()
    untouched = outs[3]
    before = (untouched.stat().st_mtime_ns, untouched.read_bytes())

    assert _run("--vae", tiny_vae, "--src", src, "--dst", dst) == 0
    third = json.loads((dst / "align_summary.json").read_text())
    assert (third["done"], third["skipped"], third["failed_count"]) == (3, 1, 0)
    assert (untouched.stat().st_mtime_ns, untouched.read_bytes()) == before
    for o, size in zip(outs, SIZES):
        with Image.open(o) as im:
            im.load()
            assert im.size == size
    assert not list(dst.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_shards_partition_the_work(tiny_vae, tmp_path):
    src = tmp_path / "src"
    _write_images(src, SIZES * 2)
    dst = tmp_path / "dst"
    for i in range(3):
        assert _run("--vae", tiny_vae, "--src", src, "--dst", dst, "--shard", f"{i}/3", "--mode", "mean") == 0
    done = [json.loads((dst / f"align_summary.shard-{i}-of-3.json").read_text())["done"] for i in range(3)]
    assert sum(done) == len(SIZES) * 2
    assert len(list((dst / "1_fake").glob("*.png"))) == len(SIZES) * 2


def test_torchrun_env_selects_shard(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert align.parse_shard(None) == (2, 4)
    assert align.parse_shard("1/3") == (1, 3)
    monkeypatch.delenv("WORLD_SIZE")
    assert align.parse_shard(None) == (0, 1)


@pytest.mark.parametrize("bad", ["3/3", "x", "1/0"])
def test_bad_shard_is_a_usage_error(tmp_path, bad, capsys):
    (tmp_path / "s").mkdir()
    assert _run("--vae", tmp_path, "--src", tmp_path / "s", "--dst", tmp_path / "d", "--shard", bad) == 2
    assert "--shard" in capsys.readouterr().err


def test_missing_vae_is_one_clear_line(tmp_path, capsys):
    src = tmp_path / "src"
    _write_images(src, [(8, 8)])
    assert _run("--vae", tmp_path / "nope", "--src", src, "--dst", tmp_path / "d") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err


def test_same_name_collision_stops_before_work(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8)).save(src / "x.jpg")
    Image.new("RGB", (8, 8)).save(src / "x.png")
    with pytest.raises(Exception, match="both be reconstructed"):
        align.plan_jobs(src)


def test_tiny_image_sides_are_padded(tiny_vae):
    ae = autoencoder.load_autoencoder(str(tiny_vae))
    for h, w in [(1, 5), (3, 1), (2, 2)]:
        img = np.full((h, w, 3), 128, np.uint8)
        assert autoencoder.reconstruct(ae, [img], [0])[0].shape == (h, w, 3)


def test_dst_inside_src_is_refused(tiny_vae, tmp_path, capsys):
    src = tmp_path / "src"
    _write_images(src, [(8, 8)])
    assert _run("--vae", tiny_vae, "--src", src, "--dst", src / "out") == 2
    assert "inside --src" in capsys.readouterr().err


def test_vq_model_is_detected_and_aligns(tmp_path):
    torch.manual_seed(0)
    vq = diffusers.VQModel(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
        norm_num_groups=4, num_vq_embeddings=16, vq_embed_dim=4, sample_size=16,
    )
    pipe = tmp_path / "pipe"
    vq.save_pretrained(pipe / "vqvae")  # a pipeline folder: the vqvae/ subfolder is found
    (pipe / "model_index.json").write_text("{}")
    src, dst = tmp_path / "src", tmp_path / "dst"
    _write_images(src, [(9, 7), (16, 16)], "png")
    assert _run("--vae", pipe, "--src", src, "--dst", dst) == 0
    summary = json.loads((dst / "align_summary.json").read_text())
    assert summary["vae_class"] == "VQModel" and summary["factor"] == 2 and summary["mode"] == "quantized"
    with Image.open(dst / "1_fake" / "img0.png") as im:
        assert im.size == (9, 7)


def test_stale_temporaries_of_this_shard_only_are_removed(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _write_images(src, SIZES * 2)
    jobs = align.plan_jobs(src)
    mine = [j for j in jobs if align.in_shard(j, 0, 2)]
    theirs = [j for j in jobs if not align.in_shard(j, 0, 2)]
    assert mine and theirs
    fakes = dst / "1_fake"
    fakes.mkdir(parents=True)
    (dst / "0_real").mkdir()
    planted = {
        fakes / f".{mine[0].rel.rsplit('/', 1)[-1]}.a1b2c3.tmp": False,
        dst / "0_real" / f".{mine[0].src.name}.123.link": False,  # a hard link being put in place
        fakes / f".{theirs[0].rel.rsplit('/', 1)[-1]}.d4e5f6.tmp": True,  # another shard's write in flight
        fakes / ".notes.txt": True,  # not a temporary of ours
    }
    for p in planted:
        p.write_bytes(b"x")
    assert align.remove_stale_temporaries(mine, dst) == 2
    assert {p: p.exists() for p in planted} == planted
