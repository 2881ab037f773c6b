"""The new apps keep the one-way import rule: `audit` at the bottom, `webhooks` above `calls`."""

from tests.test_import_cycles import app_modules, import_graph

OURS = ("organizations", "patients", "calls", "campaigns", "botrunner", "botkit", "webhooks", "audit", "myrobot")


def _imports_of(graph, package):
    return {
        target.split(".")[0]
        for name, targets in graph.items()
        if name.split(".")[0] == package
        for target in targets
    } - {package}


def test_audit_imports_none_of_our_apps():
    assert _imports_of(import_graph(app_modules()), "audit") == set()


def test_only_the_project_package_imports_webhooks():
    graph = import_graph(app_modules())
    importers = {name.split(".")[0] for name, targets in graph.items() if any(t.startswith("webhooks") for t in targets)}
    assert importers - {"webhooks"} <= {"myrobot", "campaigns"}
    assert _imports_of(graph, "webhooks") <= {"calls", "organizations", "myrobot", "audit"}


def test_fhir_sits_above_calls_and_nothing_of_ours_imports_it():
    graph = import_graph(app_modules())
    importers = {name.split(".")[0] for name, targets in graph.items()
                 if any(t == "fhir" or t.startswith("fhir.") for t in targets)}
    assert importers - {"fhir"} <= {"myrobot"}
    assert _imports_of(graph, "fhir") <= {"calls", "patients", "organizations", "audit", "masking", "myrobot"}
