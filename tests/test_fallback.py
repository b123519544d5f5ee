"""The recorded-data note names the host, the date and the reason."""

from synthetic import FORWARD_ID

from lab.book.core.fallback import live_note, recorded_note


def test_recorded_note_says_host_date_and_reason():
    note = recorded_note(reason="permission denied opening /dev/kvm", host_id=FORWARD_ID,
                         recorded="2020-01-06", detail="Synthetic CPU, kvm_pvm")
    html = note._repr_html_()
    assert 'class="admonition note lab-fallback"' in html
    for part in (FORWARD_ID, "2020-01-06", "permission denied", "Synthetic CPU"):
        assert part in html and part in str(note)


def test_notes_escape_html():
    assert "<script>" not in recorded_note(reason="<script>", host_id="h", recorded="d")._repr_html_()


def test_live_note_is_not_a_fallback():
    html = live_note(host_id="amd-1234")._repr_html_()
    assert "lab-live" in html and "lab-fallback" not in html
