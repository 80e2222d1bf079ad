"""On the real CIFAR-10 (skipped where ../shared/data/cifar10 is absent)."""

from distill import train_student


def test_smoke_student_learns_real_cifar10(real_data_dir, tmp_path):
    result = train_student.main(
        [
            "--recipe",
            "ce_smoke",
            "--data-dir",
            str(real_data_dir),
            "--output-dir",
            str(tmp_path / "ce"),
            "data.download=false",
        ]
    )
    assert result.summary["train_images"] == 2000 and result.summary["epochs"] == 2
    assert result.test_accuracy > 0.2  # chance is 0.1; 2 epochs on 2,000 images reach about 0.29
