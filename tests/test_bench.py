import json

import numpy as np
import pytest
import timm

from bench import bench
from distill.data import load_cifar10
from distill.errors import UserError
from distill.models import count_flops, count_trainable, create_model
from distill.recipe import dump_recipe, load_recipe
from tests.conftest import tiny


@pytest.mark.slow
def test_bench_runs_on_cpu_with_smoke_recipes(synthetic_dir, tmp_path):
    out = tmp_path / "bench.json"
    student = tmp_path / "kd_smoke_t2.yaml"  # a student whose views differ from the teacher's augmentation
    student.write_text(dump_recipe(load_recipe("kd_smoke", ["augment.translate=2"])))
    result = bench.main(
        [
            "--teacher-recipe",
            "teacher_smoke",
            "--student-recipe",
            str(student),
            "--runs",
            "2",
            "--work-dir",
            str(tmp_path / "runs"),
            "--json",
            str(out),
            *tiny(synthetic_dir),
        ]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result)) and saved["complete"]
    assert saved["device"] == "cpu"
    assert saved["teacher"]["train_seconds"] > 0 and 0 <= saved["teacher"]["test_accuracy"] <= 1
    assert saved["cache_seconds"] > 0 and saved["student_warmup_seconds"] > 0
    assert [r["seed"] for r in saved["student_runs"]] == [0, 1]
    assert saved["student_params"] == 19954
    assert saved["student_train_seconds"]["mean"] > 0 and saved["student_img_per_s"] > 0
    student_flops = saved["student_compute"]["train_gflop_per_image"] * 1e9
    assert student_flops == count_flops(timm.create_model("cifar_resnet_tiny", num_classes=10))["train_step"]
    assert saved["student_compute"]["train_tflop_per_s"] == pytest.approx(
        student_flops * saved["student_img_per_s"] / 1e12
    )
    assert saved["teacher"]["train_gflop_per_image"] > saved["student_compute"]["train_gflop_per_image"]
    assert saved["pipeline_seconds"] >= saved["teacher"]["train_seconds"]
    # the teacher trained with translations of 4 pixels; its one cache holds the student's views
    assert "translate: 4" in (tmp_path / "runs" / "teacher" / "recipe.yaml").read_text()
    assert json.loads((tmp_path / "runs" / "teacher" / "cache" / "meta.json").read_text())["augment"]["translate"] == 2
    by_tta = saved["student_runs"][0]["test_accuracy_by_tta"]
    assert (
        set(by_tta) == {"none", "flip", "flip+shift1"} and by_tta["flip"] == saved["student_runs"][0]["test_accuracy"]
    )
    # a second bench reuses the teacher run
    again = bench.main(
        [
            "--teacher-run",
            str(tmp_path / "runs" / "teacher"),
            "--student-recipe",
            str(student),
            "--runs",
            "1",
            "--no-warmup",
            "--work-dir",
            str(tmp_path / "runs2"),
            *tiny(synthetic_dir),
        ]
    )
    assert again["teacher"]["reused"] and len(again["student_runs"]) == 1
    assert "cache_seconds" not in again  # the teacher's own cache fits the student: reused as it is
    # a student with alternating flips needs views the teacher's cache lacks; an ensemble needs its own cache
    ensemble = bench.main(
        [
            *("--teacher-run", str(tmp_path / "runs" / "teacher"), "--teacher-run", str(tmp_path / "runs" / "teacher")),
            *("--student-recipe", "kd_smoke", "--runs", "1", "--no-warmup", "--work-dir", str(tmp_path / "runs3")),
            *tiny(synthetic_dir, "augment.alternate_flip=true"),
        ]
    )
    assert ensemble["cache_seconds"] > 0 and len(ensemble["teachers"]) == 2
    meta = json.loads((tmp_path / "runs3" / "cache" / "meta.json").read_text())
    assert meta["augment"]["alternate_flip"] and len(meta["teachers"]) == 2


@pytest.mark.slow
def test_bench_trains_its_teacher_with_teacher_set_and_caches_the_students_transfer_set(synthetic_dir, tmp_path):
    _, test = load_cifar10(synthetic_dir, download=False)
    np.save(tmp_path / "unlabeled.npy", test.images[:60])
    args = ["--teacher-recipe", "teacher_smoke", "--student-recipe", "kd_smoke", "--runs", "1", "--no-warmup"]
    result = bench.main(
        [*args, "--work-dir", str(tmp_path / "runs"), "--teacher-set", "train.label_smoothing=0.1",
         "--student-set", f"kd.unlabeled=[{tmp_path / 'unlabeled.npy'}]", *tiny(synthetic_dir)]
    )  # fmt: skip
    teacher = load_recipe(str(tmp_path / "runs" / "teacher" / "recipe.yaml"))
    student = load_recipe(str(tmp_path / "runs" / "student_0" / "recipe.yaml"))
    assert teacher.train.label_smoothing == 0.1 and student.train.label_smoothing == 0.0
    assert student.kd.unlabeled == [str(tmp_path / "unlabeled.npy")] and not teacher.kd.unlabeled
    meta = json.loads((tmp_path / "runs" / "teacher" / "cache" / "meta.json").read_text())
    assert meta["data"]["num_images"] == 400 and meta["unlabeled"]["num_images"] == 60
    assert len(result["student_runs"]) == 1
    with pytest.raises(UserError, match="--teacher-set"):  # a finished teacher is not trained again
        bench.main([*args, "--teacher-run", str(tmp_path / "runs" / "teacher"), "--work-dir", str(tmp_path / "r2"),
                    "--teacher-set", "train.label_smoothing=0", *tiny(synthetic_dir)])  # fmt: skip


def fake_result(accuracy: float, seconds: float, complete: bool = True, **extra) -> dict:
    """The fields of a bench JSON that bench/summarize.py reads (not a measurement)."""
    teacher = {"recipe": "teacher_96", "seed": 0, "train_seconds": 18.0, "test_accuracy": 0.961, "img_per_s": 1.0}
    run = {"test_accuracy": accuracy, "train_seconds": seconds}
    return {
        "device": "H100", "commit": "abc", "complete": complete, "student_recipe": "kd_x", "teachers": [teacher],
        "teacher": teacher, "cache_seconds": 2.0, "student_runs": [run],
        "student_train_seconds": {"mean": seconds, "std": 0.0}, "student_test_accuracy": {"mean": accuracy, "std": 0.0},
        **extra,
    }  # fmt: skip


def test_summary_marks_each_target_met_or_missed(tmp_path):
    from bench.summarize import summarize

    for name, result in {
        "fast94": fake_result(0.941, 1.9),
        "fast96": fake_result(0.955, 15.0),
        "ce96": fake_result(0.945, 14.0),
        "max": fake_result(0.97, 100.0, complete=False),  # cut off by its time limit after the first student
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    text = summarize(tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["teacher_96"].endswith("| yes |") and rows["kd_fast94"].endswith("| yes |")
    assert rows["kd_fast96"].endswith("| no |") and "not measured" in rows["kd_max (teachers + cache + student)"]
    assert "Step max did not finish" in text and "KD bought +1.00 points" in text
    assert (tmp_path / "summary.md").read_text() == text and (tmp_path / "frontier.png").is_file()


def test_losses_table_reads_each_steps_loss_seeds_and_scores(tmp_path):
    from bench.steps_table import table

    kd = {"loss": "kl", "temperature": 1.0, "alpha": 0.9, "std_weight": 10.0, "unlabeled": []}
    runs = [{"test_accuracy": 0.93, "train_seconds": 2.0}, {"test_accuracy": 0.94, "train_seconds": 2.2}]
    (tmp_path / "kl.json").write_text(json.dumps(fake_result(0.935, 2.1, student_kd=kd, student_runs=runs)))
    runs_std = [{"test_accuracy": 0.935, "train_seconds": 2.0}, {"test_accuracy": 0.945, "train_seconds": 2.2}]
    (tmp_path / "kl_std.json").write_text(json.dumps(fake_result(0.94, 2.1, student_kd={**kd, "loss": "kl_std"},
                                                                  student_runs=runs_std)))  # fmt: skip
    (tmp_path / "kl_T4.json").write_text(json.dumps(fake_result(0.93, 2.1, student_runs=runs,
                                                                 student_kd={**kd, "temperature": 4.0, "loss_scale": 0.25})))  # fmt: skip
    scores = {"kl/student_0": {"b_bn_train": 0.60, "c_bn_train": 0.80}, "kl/student_1": {"b_bn_train": 0.70}}
    (tmp_path / "scores.json").write_text(json.dumps({"rows": scores}))
    text = table(tmp_path, "losses")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| `")}
    assert rows["`kl`"] == ("| `kl` | `kd_x` | 1 (96.10%) | `kl`, T 1; transfer set none | 93.00% / 94.00% | 93.50% "
                            "| 65.00% | 80.00% | 2.1 |")  # fmt: skip
    assert "`kl_std`, T 1, weight 10" in rows["`kl_std`"] and "| 94.00% | - |" in rows["`kl_std`"]  # no scores: "-"
    assert "not run" in rows["`dkd`"] and "not run" in rows["`t_ens3`"]
    assert "`kl`, T 4, loss x 0.25; transfer set none" in rows["`kl_T4`"]
    assert "- `kl_std`: +0.50 points" in text


def test_whitening_snr_reports_what_the_stem_does_to_noise(synthetic_dir, capsys):
    from bench import whitening_snr

    ratios = whitening_snr.main(["--data-dir", str(synthetic_dir), "--eps", "1e-4", "1e6"])
    out = capsys.readouterr().out
    at_input = float(out.split("at the input: ")[1].split()[0])
    # A huge eps leaves a scaled rotation of each patch: the ratio is the input's; a tiny one amplifies
    # the faint directions, where the synthetic images' power is least, so noise gains on the images.
    assert ratios["eps 1e+06"] == pytest.approx(at_input, rel=0.05)
    assert ratios["eps 0.0001"] < 0.8 * at_input


def test_whitening_snr_refuses_a_run_without_a_stem(synthetic_dir, tmp_path):
    from bench import whitening_snr
    from distill import train_student
    from distill.errors import UserError

    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "ce"), *tiny(synthetic_dir)])
    with pytest.raises(UserError, match="has no whitening stem"):
        whitening_snr.main(["--data-dir", str(synthetic_dir), "--eps", "1", "--run", str(tmp_path / "ce")])


def test_loop_profile_counts_a_ragged_last_batch(synthetic_dir, tmp_path):
    from bench import loop_profile

    # 400 images in batches of 64: six full batches and one of 16; the bare step's share is per image.
    out = tmp_path / "profile.json"
    result = loop_profile.main(
        ["--recipe", "ce_smoke", "--steps", "2", "--json", str(out), *tiny(synthetic_dir, "train.batch_size=64")]
    )
    assert json.loads(out.read_text()) == result
    parts = result["parts_seconds"]
    assert result["steps_per_epoch"] == 7 and result["train_images"] == 400
    assert parts["bare steps (forward, CE, backward, SGD)"] == pytest.approx(400 / result["bare_step_img_per_s"])
    assert result["loop_share_of_step"] == pytest.approx(
        parts["bare steps (forward, CE, backward, SGD)"] / result["loop_seconds"]
    )
    assert sum(parts.values()) >= result["loop_seconds"] * 0.999  # "the rest" closes the sum, never negative


def test_student_speed_times_configs_side_by_side(synthetic_dir):
    from bench.student_speed import measure

    result = measure(["plain=ce_smoke:", "gelu=ce_smoke:model.kwargs.act=gelu train.batch_size=40 model.kwargs.widths=[8,16,32]"], str(synthetic_dir),
                     images=200, rounds=2)  # fmt: skip
    assert set(result["seconds_per_epoch"]) == {"plain", "gelu"} and result["ratio"]["plain"] == 1.0
    assert all(len(s) == 1 and s[0] > 0 for s in result["all_seconds"].values())  # the first round only warmed up
    assert result["configs"]["gelu"]["overrides"] == ["model.kwargs.act=gelu", "train.batch_size=40",
                                                       "model.kwargs.widths=[8,16,32]"]  # fmt: skip


def test_student_speed_times_a_teacher_over_the_cap(synthetic_dir):
    """teacher_96 (9.9M) was refused as a student by the 5M cap: ``--teacher`` sets it up as a teacher."""
    from bench.student_speed import measure

    big = "big=ce_smoke:model.kwargs.widths=[8,16,1024] train.batch_size=20"
    with pytest.raises(UserError, match="over the 5,000,000 cap"):
        measure([big], str(synthetic_dir), images=40, rounds=2)
    result = measure(["plain=ce_smoke:"], str(synthetic_dir), images=40, rounds=2, teachers=(big,))
    assert result["configs"]["big"]["role"] == "teacher" and result["seconds_per_epoch"]["big"] > 0


def test_student_speed_trains_at_the_epochs_resolution(synthetic_dir):
    """Progressive resizing timed at 32 pixels read as costing what the plain recipe does (issue 31's 1.04x): each
    round trains as that epoch of the recipe would, at its resolution, and says which."""
    from bench.student_speed import measure

    result = measure(["plain=ce_smoke:", "prog=ce_smoke:train.progressive_min_size=16 train.epochs=10"],
                     str(synthetic_dir), images=200, rounds=2)  # fmt: skip
    assert result["resolutions"] == {"plain": [32], "prog": [16]}


def test_every_ablation_row_builds_its_real_student():
    """The rehearsal swaps in a tiny net, so a row whose overrides the real student refuses would first fail on the
    GPU: build each row's model from its recipe here (and list every row in the table)."""
    from bench.device import expand, fields, load_plan
    from bench.steps_table import order

    plan = load_plan("ablation")
    rows = {}
    for step in expand(plan, fields(plan, "", "", "")):
        args = step["args"]
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--student-set"]
        rows[step["name"]] = (args[args.index("--student-recipe") + 1], [o for o in sets if o != "kd.alpha=0"])
    assert sorted(rows) == sorted(order("ablation")[0])
    params = {}
    for name, (recipe_name, overrides) in rows.items():
        recipe = load_recipe(recipe_name, ["kd.alpha=0", *overrides])
        params[name] = count_trainable(create_model(recipe.model.name, recipe.model.kwargs, student=True))
    assert params["air"] == params["air_relu"] == params["lite_airmodel"] == 2_024_930  # BatchNorm scales frozen
    assert params["lite"] == params["lite_airopt"] == params["air_bn_weight"] == 2_026_402
    assert params["air_b112"] > 3_000_000


def test_first_steps_prints_each_steps_loss(synthetic_dir, capsys):
    from bench.first_steps import main

    out = main(["--data-dir", str(synthetic_dir), "--recipe", "kd_fast94_muon", "--steps", "3",
                "model.name=cifar_resnet_tiny", "train.batch_size=50"])  # fmt: skip
    assert len(out) == 3 and all(loss > 0 and 0 <= acc <= 1 for loss, acc in out)
    assert capsys.readouterr().out.splitlines()[-3].startswith("0 ")


def test_student_speed_times_a_selecting_epoch_on_its_share(synthetic_dir):
    """A selecting epoch trains on a share of the images in a full epoch's steps: timed as that epoch trains."""
    from bench.student_speed import measure

    result = measure(["plain=ce_smoke:", "sel=ce_smoke:train.select_fraction=0.5 train.select_after=1"],
                     str(synthetic_dir), images=200, rounds=2)  # fmt: skip
    assert result["shares"] == {"plain": [1.0], "sel": [0.5]}
