"""`fakedet bench --images DIR`: the end-to-end figure (decode + preprocess + infer),
with the preprocessing column measured, comparable with the service's throughput."""

from __future__ import annotations

import json

from conftest import save_image

from fakedet.cli import main


def test_bench_images_measures_decode_preprocess_and_inference(tiny_package, tmp_path, capsys):
    path, _ = tiny_package
    for i in range(5):
        save_image(tmp_path / "imgs" / f"{i}.png", size=(40, 30), seed=i)
    out = tmp_path / "b.json"
    rc = main(["bench", str(path), "--images", str(tmp_path / "imgs"), "--backend", "ort-cpu", "--precision",
               "fp32", "--batch", "1,4", "--warmup", "0", "--duration", "0.05", "--repeats", "2", "-q",
               "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["settings"]["e2e_dir"] == str(tmp_path / "imgs")
    assert [r["batch"] for r in report["results"]] == [1, 4]
    for row in report["results"]:
        split = row["split_ms"]
        assert split["preprocess"] is not None and split["preprocess"] > 0
        assert split["end_to_end"] >= split["preprocess"]  # each iteration includes its decoding
        assert not any("preprocessing not measured" in n for n in row["notes"])
    table = capsys.readouterr().out
    pre_col = table.splitlines()[0].split().index("pre")
    assert all(line.split()[pre_col] != "-" for line in table.splitlines()[2:4])
