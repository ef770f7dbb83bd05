"""M9: prints a line as it is imported, as its hooks run and as it computes, as plugin code often does while it is
being written."""

from dataclasses import dataclass
from pathlib import Path

from zerosite import ReportModule, hookimpl

print("debug: imported")


@dataclass(frozen=True)
class Result:
    land_area_sqm: float
    large_site: bool
    inputs: tuple[str, ...] = ()


def compute_m9(project, deps):  # type: ignore[no-untyped-def]
    print("debug: computing", project.id)
    return Result(project.land_area_sqm, False)


@hookimpl
def zerosite_register_modules(register):  # type: ignore[no-untyped-def]
    print("debug: registering")
    register(ReportModule(name="M9", title="출력", compute=compute_m9, template="m9_print.html.j2"))


@hookimpl
def zerosite_template_dirs():  # type: ignore[no-untyped-def]
    return [Path(__file__).parent / "templates"]


@hookimpl
def zerosite_prepare_jinja2_environment(env):  # type: ignore[no-untyped-def]
    print("debug: preparing the environment")
