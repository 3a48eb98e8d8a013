"""The directory of centres and staff: the demo file loads, and every bad row is named by file and line."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.directory import Centre, Staff, load_directory
from config.loading import ConfigError
from config.settings import DEFAULT_DIRECTORY

CENTRES = """\
centres:
- {id: C01, name: Andheri, region: west, state: MH, timezone: Asia/Kolkata}
- {id: C02, name: Baner, region: west, state: MH, timezone: Asia/Kolkata}
"""
STAFF = """\
staff:
- {id: S1, name: Ayaan Gupta, role: technician, centre: C01}
- {id: S2, name: Deepak Pillai, role: manager, centre: C02}
"""
ROLES = "technician, service_advisor, support_agent, sales_executive, dealer, manager"
CENTRES_CSV = "id,name,region,state,timezone\nC01,Andheri,west,MH,Asia/Kolkata\nC02,Baner,west,MH,Asia/Kolkata\n"
STAFF_CSV = "id,name,role,centre\nS1,Ayaan Gupta,technician,C01\nS2,Deepak Pillai,manager,C02\n"


def yaml_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError that loading ``text`` as a directory YAML file raises."""
    path = tmp_path / "directory.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_directory(path)
    return info.value


def csv_folder(tmp_path: Path, centres: str = CENTRES_CSV, staff: str = STAFF_CSV) -> Path:
    (tmp_path / "centres.csv").write_text(centres, encoding="utf-8")
    (tmp_path / "staff.csv").write_text(staff, encoding="utf-8")
    return tmp_path


def test_demo_directory_loads() -> None:
    """The shipped demo directory has 20 centres and 300 staff, 15 per centre, all in Asia/Kolkata."""
    directory = load_directory(DEFAULT_DIRECTORY)
    assert (len(directory.centres), len(directory.staff)) == (20, 300)
    assert repr(directory) == "<Directory 20 centres, 300 staff>"
    assert {c.timezone for c in directory.centres.values()} == {ZoneInfo("Asia/Kolkata")}
    per_centre = {cid: sum(s.centre_id == cid for s in directory.staff.values()) for cid in directory.centres}
    assert set(per_centre.values()) == {15}
    assert directory.person("S0001") == Staff("S0001", "Ayaan Gupta", "technician", "C01")
    assert directory.centre("C01") == Centre("C01", "Pitstop Andheri", "west", "MH", ZoneInfo("Asia/Kolkata"))
    assert directory.centre("C99") is None
    assert directory.person("S9999") is None


def test_small_yaml_directory_loads(tmp_path: Path) -> None:
    """A valid two-centre YAML file loads its rows as given."""
    path = tmp_path / "directory.yml"
    path.write_text(CENTRES + STAFF, encoding="utf-8")
    directory = load_directory(path)
    assert sorted(directory.centres) == ["C01", "C02"]
    assert directory.person("S2") == Staff("S2", "Deepak Pillai", "manager", "C02")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            CENTRES + "- {id: C01, name: Again, region: west, state: MH, timezone: Asia/Kolkata}\n" + STAFF,
            4,
            "centre id 'C01' is listed twice",
            id="duplicate-centre",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: Zoya, role: chef, centre: C01}\n",
            7,
            f"unknown role 'chef' (one of: {ROLES})",
            id="unknown-role",
        ),
        pytest.param(
            CENTRES.replace("Asia/Kolkata}\n- {id: C02", "Mars/Olympus}\n- {id: C02") + STAFF,
            2,
            "unknown time zone 'Mars/Olympus' (use an IANA name such as Asia/Kolkata)",
            id="unknown-time-zone",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: Zoya, role: technician, centre: C99}\n",
            7,
            "staff 'S3' works at unknown centre 'C99'",
            id="unknown-centre",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, role: technician, centre: C01}\n", 7, "missing field 'name'", id="missing"
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: Zoya, role: technician, centre: C01, salary: x}\n",
            7,
            "unknown field(s): salary",
            id="unknown-field",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: Zoya, role: technician, centre: C01, phone: '98000 00012'}\n",
            7,
            "'phone' '98000 00012' is not a phone number in E.164 form (+ country code, digits)",
            id="phone-not-e164",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: Zoya, role: technician, centre: C01, email: zoya-at-example}\n",
            7,
            "'email' 'zoya-at-example' is not an e-mail address",
            id="bad-email",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: 'S 3', name: Zoya, role: technician, centre: C01}\n",
            7,
            "id 'S 3' may hold only letters, digits and . _ : / - (max 128)",
            id="bad-id",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S1, name: Zoya, role: technician, centre: C01}\n",
            7,
            "staff id 'S1' is listed twice",
            id="duplicate-staff",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: yes, role: technician, centre: C01}\n",
            7,
            "field 'name' must be text",
            id="boolean-name",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: Zoya, name: Zara, role: technician, centre: C01}\n",
            7,
            "duplicate key 'name'",
            id="duplicate-key",
        ),
        pytest.param(
            CENTRES + STAFF + "- {id: S3, name: [Zoya\n",
            8,
            "not valid YAML: expected ',' or ']', but got '<stream end>'",
            id="invalid-yaml",
        ),
        pytest.param(
            CENTRES
            + "staff:\n- id: S1\n  name: A\n  role: technician\n  centre: C01\n- id: S2\n  name: B\n  role: chef\n"
            "  centre: C01\n",
            9,
            f"unknown role 'chef' (one of: {ROLES})",
            id="block-style-row-line",
        ),
        pytest.param(CENTRES, 1, "missing top-level key 'staff'", id="no-staff-key"),
        pytest.param("", None, "the file is empty", id="empty-file"),
        pytest.param("centres: []\n" + STAFF, None, "no centres", id="no-centres"),
    ],
)
def test_yaml_errors_name_file_and_line(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    """Each bad directory file raises ConfigError with the file, the line of the bad row and the reason."""
    error = yaml_error(tmp_path, text)
    path = str(tmp_path / "directory.yaml")
    assert (error.path, error.line, error.reason) == (path, line, reason)
    assert str(error) == (f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


def test_unsupported_directory_file_type(tmp_path: Path) -> None:
    """A path that is neither YAML nor a folder is refused with what a directory may be."""
    path = tmp_path / "directory.txt"
    path.write_text(CENTRES + STAFF, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"a directory is a \.yaml/\.yml file or a folder with centres\.csv"):
        load_directory(path)


def test_csv_folder_loads(tmp_path: Path) -> None:
    """A folder with centres.csv and staff.csv loads the same rows a YAML file would."""
    directory = load_directory(csv_folder(tmp_path))
    assert directory.centre("C02") == Centre("C02", "Baner", "west", "MH", ZoneInfo("Asia/Kolkata"))
    assert directory.person("S1") == Staff("S1", "Ayaan Gupta", "technician", "C01")
    assert len(directory.staff) == 2


@pytest.mark.parametrize(
    ("centres", "staff", "file", "line", "reason"),
    [
        pytest.param(
            CENTRES_CSV.replace(",timezone", "").replace(",Asia/Kolkata", ""),
            STAFF_CSV,
            "centres.csv",
            1,
            "missing column(s): timezone",
            id="missing-column",
        ),
        pytest.param(
            CENTRES_CSV,
            STAFF_CSV.replace("centre\n", "centre,salary\n", 1),
            "staff.csv",
            1,
            "unknown column(s): salary",
            id="unknown-column",
        ),
        pytest.param(
            CENTRES_CSV,
            STAFF_CSV.replace("manager", "chef"),
            "staff.csv",
            3,
            f"unknown role 'chef' (one of: {ROLES})",
            id="unknown-role-line-3",
        ),
        pytest.param(
            CENTRES_CSV,
            STAFF_CSV.replace("manager,C02", "manager,C02,extra"),
            "staff.csv",
            3,
            "more fields than columns",
            id="too-many-fields",
        ),
        pytest.param(
            CENTRES_CSV,
            STAFF_CSV.replace("manager,C02", "manager"),
            "staff.csv",
            3,
            "missing field 'centre'",
            id="too-few-fields",
        ),
        pytest.param(
            CENTRES_CSV,
            "id,name,role,centre\nS1,Ayaan Gupta,technician,C01\n\nS2,Deepak Pillai,chef,C02\n",
            "staff.csv",
            4,
            f"unknown role 'chef' (one of: {ROLES})",
            id="line-counts-blank-lines",
        ),
    ],
)
def test_csv_errors_name_file_and_line(
    tmp_path: Path, centres: str, staff: str, file: str, line: int, reason: str
) -> None:
    """Each bad CSV row raises ConfigError naming the CSV file and its line number."""
    with pytest.raises(ConfigError) as info:
        load_directory(csv_folder(tmp_path, centres, staff))
    assert (info.value.path, info.value.line, info.value.reason) == (str(tmp_path / file), line, reason)


def test_csv_folder_without_staff_file(tmp_path: Path) -> None:
    """A folder missing staff.csv is refused naming that file."""
    (tmp_path / "centres.csv").write_text(CENTRES_CSV, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_directory(tmp_path)
    assert info.value.path == str(tmp_path / "staff.csv")
    assert info.value.reason.startswith("cannot read: ")


def test_csv_with_byte_order_mark_loads(tmp_path: Path) -> None:
    """A CSV saved by a spreadsheet with a UTF-8 byte-order mark loads like one without."""
    directory = load_directory(csv_folder(tmp_path, centres="\ufeff" + CENTRES_CSV))
    assert sorted(directory.centres) == ["C01", "C02"]
