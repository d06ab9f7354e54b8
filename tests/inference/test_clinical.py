"""DICOM and NIfTI in, masks out: files the tests write with pydicom and nibabel."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from brain_mtl.commands.main import main
from brain_mtl.data.clinical import clinical_kind, read_dicom, read_nifti, write_nifti_mask
from tests.fixtures import write_checkpoint, write_dicom

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def _ramp(h=32, w=40):
    return np.tile(np.arange(w, dtype=np.uint16) * 100, (h, 1))


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    pixels = _ramp()
    # Stored 0..3900, slope 2 and intercept -1000: -1000..6800; the window 2000 +- 1000 maps 1000..3000 onto 0..255.
    path = write_dicom(tmp_path / "a.dcm", pixels, slope=2.0, intercept=-1000.0, window=(2000, 2001))
    (only,) = read_dicom(path)
    values = pixels * 2.0 - 1000.0
    expected = np.round(np.clip((values - (2000 - 0.5 - 1000)) / 2000, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(only.image[..., 0], expected)
    assert only.image.shape == (32, 40, 3) and only.sop_instance_uid == "1.2.3.4" and only.index is None

    inverted = write_dicom(
        tmp_path / "b.dcm", pixels, photometric="MONOCHROME1", slope=2.0, intercept=-1000.0, window=(2000, 2001)
    )
    np.testing.assert_array_equal(read_dicom(inverted)[0].image[..., 0], 255 - read_dicom(path)[0].image[..., 0])
    # No window: the 0.5th..99.5th percentile, so the ramp spans (nearly) the whole range.
    plain = read_dicom(write_dicom(tmp_path / "c.dcm", pixels))[0].image[..., 0]
    assert plain[:, 0].max() == 0 and plain[:, -1].min() == 255


def test_multi_frame_dicom_is_one_slice_per_frame_and_content_is_recognised(tmp_path):
    frames = np.stack([_ramp() * (k + 1) // 3 for k in range(3)])
    path = write_dicom(tmp_path / "series", frames)  # no extension: recognised by "DICM" at byte 128
    assert clinical_kind(path) == "dicom"
    slices = read_dicom(path)
    assert [s.index for s in slices] == [0, 1, 2] and slices[1].source.endswith("series#frame1")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(ValueError, match=r"broken\.dcm: not a readable DICOM file"):
        read_dicom(tmp_path / "broken.dcm")


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([1.0, 1.0, 3.0, 1.0]),  # RAS+, thick slices along the third axis
        np.diag([-1.0, -1.0, 3.0, 1.0]),  # LPS-like: x and y flipped
        np.array([[0, 0, 3.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]]),  # axes permuted and flipped
    ],
)
def test_a_nifti_mask_goes_back_to_the_voxels_it_was_predicted_on(tmp_path, affine):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (12, 10, 7)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "vol.nii.gz"))
    volume = read_nifti(tmp_path / "vol.nii.gz")
    thick = int(np.argmax(np.linalg.norm(affine[:3, :3], axis=0)))
    assert volume.axis == thick  # the through-plane axis: the largest spacing
    assert [s.index for s in volume.slices] == list(range(data.shape[thick]))
    # "Predict" each slice's bright pixels; written back, they must be the volume's bright voxels.
    masks = [s.image[..., 0] > 127 for s in volume.slices]
    out = write_nifti_mask(volume, masks, tmp_path / "vol_mask.nii.gz")
    written = nib.load(str(out))
    np.testing.assert_allclose(written.affine, affine)
    low, high = np.percentile(data.astype(np.float64), (0.5, 99.5))
    bright = np.round(np.clip((data - low) / (high - low), 0, 1) * 255) > 127
    np.testing.assert_array_equal(np.asarray(written.dataobj), bright.astype(np.uint8))


def test_an_axial_slice_is_shown_as_a_radiologist_reads_it(tmp_path):
    # A block in the patient's right-anterior corner of an axial RAS+ volume (high x = right, high y = anterior).
    data = np.zeros((20, 20, 3), dtype=np.float32)
    data[15:, 15:, :] = 1000
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])), str(tmp_path / "v.nii"))
    image = read_nifti(tmp_path / "v.nii").slices[1].image[..., 0]
    # Top (anterior), left (the patient's right): the radiological convention, as BRISC's slices are shown.
    assert image[:5, :5].min() == 255 and image[5:, :].max() == 0 and image[:, 5:].max() == 0


def test_predict_images_on_a_folder_mixing_dicom_nifti_and_jpeg(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "m.ckpt")
    folder = tmp_path / "in"
    folder.mkdir()
    write_dicom(folder / "slice.dcm", _ramp(), window=(2000, 4000), uid="1.2.826.0.1.3680043.2.1")
    write_dicom(folder / "cine.dcm", np.stack([_ramp()] * 3), uid="1.2.826.0.1.3680043.2.2")
    affine = np.diag([0.9, 0.9, 5.0, 1.0])
    nib.save(
        nib.Nifti1Image(np.random.default_rng(1).random((24, 20, 6)).astype(np.float32), affine),
        str(folder / "brain.nii.gz"),
    )
    cv2.imwrite(str(folder / "scan.jpg"), np.random.default_rng(2).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    (folder / "broken.dcm").write_bytes(b"not a dicom file at all" * 10)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict-images", "--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(out)]) == 1
    printed = capsys.readouterr()
    payload = json.loads((out / "predictions.json").read_text())
    rows = payload["predictions"]
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"].split("#")[0], []).append(row)
    # Four results (the slice, the three frames, the six NIfTI slices, the JPEG) and one named failure.
    assert sorted(p.rsplit("/", 1)[-1] for p in by_file) == ["brain.nii.gz", "cine.dcm", "scan.jpg", "slice.dcm"]
    assert len(by_file[str(folder / "cine.dcm")]) == 3 and len(by_file[str(folder / "brain.nii.gz")]) == 6
    assert [f["file"] for f in payload["failed"]] == [str(folder / "broken.dcm")]
    assert "broken.dcm" in printed.err and "not a readable DICOM file" in printed.err
    assert payload["not_read"] == [str(folder / "notes.txt")] and "not read: 1 files" in printed.out
    (dicom_row,) = by_file[str(folder / "slice.dcm")]
    assert dicom_row["sop_instance_uid"] == "1.2.826.0.1.3680043.2.1" and (out / dicom_row["mask_file"]).is_file()
    assert cv2.imread(str(out / dicom_row["mask_file"]), cv2.IMREAD_GRAYSCALE).shape == (32, 40)
    volume_rows = by_file[str(folder / "brain.nii.gz")]
    assert [r["slice"] for r in volume_rows] == list(range(6))
    mask = nib.load(str(out / volume_rows[0]["mask_file"]))
    assert mask.shape == (24, 20, 6) and volume_rows[0]["mask_file"] == "brain_mask.nii.gz"
    np.testing.assert_allclose(mask.affine, affine)
    assert volume_rows[0]["mask_file"] in payload["files"]


def test_the_app_reads_a_dicom_upload_and_the_middle_slice_of_a_nifti_upload(tmp_path):
    from brain_mtl.app.uploads import UploadError, read_upload

    dicom = write_dicom(tmp_path / "a.dcm", _ramp(), window=(2000, 4000))
    np.testing.assert_array_equal(read_upload("a.dcm", dicom.read_bytes()), read_dicom(dicom)[0].image)
    data = np.random.default_rng(3).random((16, 12, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])), str(tmp_path / "v.nii.gz"))
    image = read_upload("v.nii.gz", (tmp_path / "v.nii.gz").read_bytes())
    np.testing.assert_array_equal(image, read_nifti(tmp_path / "v.nii.gz").slices[2].image)
    with pytest.raises(UploadError, match=r"broken\.nii\.gz: not a readable NIfTI file"):
        read_upload("broken.nii.gz", b"\x1f\x8b not really gzip")
    with pytest.raises(UploadError, match=r"notes\.gz: a \.gz file that is not a NIfTI volume"):
        read_upload("notes.gz", b"\x1f\x8b")
