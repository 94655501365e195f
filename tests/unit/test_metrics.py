from sidecar.observability.metrics import MAX_TOOL_LABELS, SidecarMetrics


def test_tool_labels_are_normalised_and_bounded():
    m = SidecarMetrics()
    assert m.tool_label("GitHub") == "github"
    assert m.tool_label('evil"label{x}') == "evil_label_x"
    assert m.tool_label("") == "unknown"
    assert len(m.tool_label("x" * 500)) == 32
    for i in range(MAX_TOOL_LABELS * 2):
        m.tool_label(f"tool{i}")
    assert m.tool_label("one-more-new-tool") == "other"
    assert m.tool_label("github") == "github"  # known labels keep working
