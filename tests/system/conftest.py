"""pytest puts the repository root on sys.path (tests/ is a package), where our packaging/
folder would shadow PyPA's ``packaging`` that matplotlib and dask import: bind the real one."""

from diestack.packaging.report import ensure_pypa_packaging

ensure_pypa_packaging()
