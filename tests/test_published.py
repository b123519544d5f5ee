"""Published figures, the timeline and the history chapters that quote them.

* every CSV under ``data/published`` and ``data/timeline.csv`` validates
  against its schema, and every row names a source that ``references.bib`` has;
* transcribed values say so, and the least certain cell of Gregg's matrix is marked;
* the timeline is sorted, its dates parse and agree with their precision;
* the numbers the prose quotes are computed from the data (and the prose of the
  history chapters types no measured number, and quotes only dates the timeline has).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date

import matplotlib
import pytest

matplotlib.use("Agg")

from lab.book import published as pub  # noqa: E402
from lab.datapackage import DataError, find_packages, load_resource, validate_package  # noqa: E402
from lab.paths import DATA_DIR, PUBLISHED_DIR, REPO_ROOT  # noqa: E402

BIB = REPO_ROOT / "references.bib"
MY_PACKAGES = ["sosp2003", "adams_agesen2006", "gregg2017", "acquisitions"]
CHAPTERS = [
    REPO_ROOT / "chapters/history/open_source.md",
    REPO_ROOT / "chapters/history/xen.md",
    REPO_ROOT / "chapters/history/kvm_history.md",
    REPO_ROOT / "chapters/cloud/nitro.md",
]


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(encoding="utf-8"), flags=re.M))


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("name", MY_PACKAGES)
def test_my_packages_exist(name):
    assert (PUBLISHED_DIR / name / "datapackage.json").is_file()


@pytest.mark.parametrize("package", find_packages(PUBLISHED_DIR) + [DATA_DIR], ids=str)
def test_every_published_csv_validates_and_cites(package):
    """Every resource validates; every row has a source that references.bib defines."""
    if package == DATA_DIR:
        frames = {"timeline": load_resource(DATA_DIR, "timeline")}
    else:
        frames = validate_package(package)
    keys = bib_keys()
    for name, frame in frames.items():
        assert "source" in frame.columns, f"{package}/{name}: no 'source' column"
        assert frame["source"].notna().all(), f"{package}/{name}: a row has no source"
        unknown = set(frame["source"]) - keys
        assert not unknown, f"{package}/{name}: sources not in references.bib: {sorted(unknown)}"


def test_every_field_is_described():
    for package in find_packages(PUBLISHED_DIR) + [DATA_DIR]:
        descriptor = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
        for resource in descriptor["resources"]:
            for field in resource["schema"]["fields"]:
                assert field.get("description"), f"{package}: {resource['name']}.{field['name']}"


def test_transcribed_values_say_so():
    assert pub.sosp_figure3()["note"].str.contains("transcribed").all()
    assert pub.gregg_matrix()["note"].str.contains("transcribed").all()
    desc = json.loads((PUBLISHED_DIR / "sosp2003/datapackage.json").read_text(encoding="utf-8"))
    assert "TRANSCRIBED" in desc["description"]


def test_gregg_least_certain_cell_is_marked():
    m = pub.gregg_matrix()
    unsure = m[~m["certain"].astype(bool)]
    assert list(zip(unsure["type"], unsure["dimension"], strict=True)) == [("Xen HVM 4.0.1", "interrupts & timers")]
    assert "least certain" in unsure["note"].iloc[0]


def test_gregg_matrix_is_complete():
    m = pub.gregg_matrix()
    assert m.groupby("type").size().eq(5).all()
    assert len(pub.gregg_rows()) == 8
    assert set(m.loc[m["type"] == "AWS Nitro 2017", "level"]) == {"VH"}


def test_missing_source_is_a_clear_error(tmp_path):
    broken = tmp_path / "sosp2003"
    shutil.copytree(PUBLISHED_DIR / "sosp2003", broken)
    csv = broken / "figure3.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("Barham2003", "")
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"figure3.csv:2: column 'source' is required"):
        load_resource(broken, "figure3")


# --------------------------------------------------------------------------- timeline


def test_timeline_sorted_and_dates_parse():
    tl = pub.timeline()
    assert list(tl["start"]) == sorted(tl["start"]), "timeline.csv must be sorted by date"
    for text, precision, start, end in zip(tl["date"], tl["precision"], tl["start"], tl["end"], strict=True):
        assert isinstance(start, date) and start <= end
        if precision == "day":
            assert date.fromisoformat(text) == start == end
    assert tl["start"].min().year == 2003 and tl["start"].max().year == 2017


def test_timeline_undated_events_are_marked():
    tl = pub.timeline()
    vague = tl[tl["precision"] != "day"]
    assert len(vague) >= 3
    for _, ev in vague.iterrows():
        assert ev["note"], f"{ev['event']}: an event without a day must say why"
        assert pub.PRECISION_JA[ev["precision"]], "the figure must label year/month-only events"


def test_date_span_rejects_mismatched_precision():
    assert pub.date_span("2008-07", "month") == (date(2008, 7, 1), date(2008, 7, 31))
    assert pub.date_span("2004", "year") == (date(2004, 1, 1), date(2004, 12, 31))
    with pytest.raises(ValueError):
        pub.date_span("2008-07", "day")


# --------------------------------------------------------------------------- numbers quoted by the prose


def test_xen_build_overhead_is_three_percent():
    assert round(pub.sosp_overhead_pct("Linux build", "X")) == 3  # the paper's "a mere 3%"


def test_specweb_numbers_match_the_paper_text():
    assert pub.sosp_fraction_of_native("SPEC WEB99", "X") > 0.99  # "within 1% of native"
    assert pub.sosp_fraction_of_native("SPEC WEB99", "V") < 1 / 3  # "less than a third"
    assert pub.sosp_fraction_of_native("SPEC WEB99", "U") < 1 / 3
    gain = pub.sosp_text("specweb_native_2cpu") / pub.sosp_value("SPEC WEB99", "L") - 1
    assert round(100 * gain) == pub.sosp_text("specweb_native_2cpu_gain")  # "by 28%"


def test_relative_performance_handles_lower_is_better():
    rel = pub.sosp_relative().set_index(["benchmark", "system"])["relative"]
    assert rel.xs("L", level="system").eq(1.0).all()
    assert rel[("Linux build", "X")] == pytest.approx(0.9705, abs=1e-4)  # 263 s native against 271 s on Xen
    assert rel[("Linux build", "U")] < rel[("Linux build", "V")] < rel[("Linux build", "X")] < 1


def test_adams_agesen_hardware_vmm_slower_on_mmu():
    assert pub.adams_cycles("pgfault", "vtx") > pub.adams_cycles("pgfault", "bt")
    assert pub.adams_cycles("ptemod", "vtx") > 30 * pub.adams_cycles("ptemod", "bt")
    table = pub.adams_agesen_table()
    assert table.loc["ptemod", "ネイティブ"] == "one store"
    with pytest.raises(KeyError):
        pub.adams_cycles("syscall", "native")


def test_gregg_levels_stated_costs():
    levels = pub.gregg_levels()
    assert (levels.loc["P", "low"], levels.loc["P", "high"]) == (10, 50)
    assert levels.loc["VH", "unit"] == "percent"


# --------------------------------------------------------------------------- figures and widget


@pytest.mark.parametrize("draw", [pub.sosp_figure, pub.adams_agesen_figure, pub.gregg_figure, pub.timeline_figure])
def test_figures_draw(draw):
    fig = draw()
    assert fig.axes
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_gregg_switchable_has_one_tab_per_row():
    sw = pub.gregg_switchable()
    assert sw.group == "gregg-row"
    assert [v.label for v in sw.views] == pub.gregg_rows()
    page = sw.to_html()
    assert page.count('data-sync-group="gregg-row"') == 8
    assert "最も不確か" in page  # the note of the uncertain cell travels with its tab


# --------------------------------------------------------------------------- chapters


def _prose(text: str) -> str:
    """Markdown without the front matter, code cells, directives' options, roles and inline code."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?```", "", text, flags=re.S)
    text = re.sub(r"^:[a-z]+:.*$", "", text, flags=re.M)
    text = re.sub(r"\{[a-z:]+\}`[^`]*`", "", text)
    text = re.sub(r"`[^`]*`", "", text)
    return text


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_prose_types_no_measured_number(path):
    prose = _prose(path.read_text(encoding="utf-8"))
    prose = re.sub(r"\d{4}\s*年(\s*\d{1,2}\s*月(\s*\d{1,2}\s*日)?)?", "", prose)
    units = r"(?:%|％|倍|サイクル|秒|百万ドル|ドル|MB|kB|GB|GHz|クライアント|日後|年後|件)"
    typed = re.findall(r"\d[\d,.]*\s*" + units, prose)
    assert not typed, f"{path.name}: numbers typed into prose (glue them from data): {typed}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_prose_dates_are_in_the_timeline(path):
    tl = pub.timeline()
    days = {d for d, p in zip(tl["start"], tl["precision"], strict=True) if p == "day"}
    months = {(d.year, d.month) for d, p in zip(tl["start"], tl["precision"], strict=True) if p in ("day", "month")}
    prose = _prose(path.read_text(encoding="utf-8"))
    for y, m, d in re.findall(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日", prose):
        assert date(int(y), int(m), int(d)) in days, f"{path.name}: {y}-{m}-{d} is not a day of the timeline"
    for y, m in re.findall(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?!\s*\d{1,2}\s*日)", prose):
        assert (int(y), int(m)) in months, f"{path.name}: {y}-{m} is not a month of the timeline"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_glued_keys_and_figures_are_defined_and_referenced(path):
    text = path.read_text(encoding="utf-8")
    defined = set(re.findall(r"""glue(?:_figure)?\(\s*f?["']([^"']+)["']""", text))
    # keys built in a loop with an f-string: expand the two loops the chapters use
    for code in ("vs", "p", "vh"):
        defined |= {f"gregg_{code}_low", f"gregg_{code}_high"}
    for key in ("hvm30", "aws2013", "aws2017", "nitro"):
        defined.add(f"gregg_hw_{key}")
    used = set(re.findall(r"\{glue:text\}`([^`:]+)", text))
    assert used <= defined, f"{path.name}: glued keys used but never glued: {sorted(used - defined)}"
    for block in re.findall(r"```\{glue:figure\}.*?```", text, flags=re.S):
        name = re.search(r":name:\s*(\S+)", block)
        assert name and ":alt:" in block, f"{path.name}: a glue:figure lacks :name: or :alt:"
        caption = block.split("\n\n", 1)
        assert len(caption) == 2 and caption[1].strip("`\n "), f"{path.name}: {name.group(1)} has no caption"
        assert f"<{name.group(1)}>" in text or f"`{name.group(1)}`" in text, (
            f"{path.name}: figure {name.group(1)} is never referenced with {{numref}}"
        )


def test_cited_keys_exist():
    keys = bib_keys()
    cited: set[str] = set()
    for path in CHAPTERS + [REPO_ROOT / "chapters/appendix/glossary.md"]:
        for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", path.read_text(encoding="utf-8")):
            cited |= {k.strip() for k in group.split(",")}
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_usd_ja_writes_prices_the_japanese_way():
    assert pub.usd_ja(500) == "5 億ドル"
    assert pub.usd_ja(107) == "1 億 700 万ドル"
    assert pub.usd_ja(0.5) == "50 万ドル"
