"""JavaScript on node. V8 reserves large virtual ranges, so memory is bounded by RLIMIT_DATA and by
``--max-old-space-size``, not RLIMIT_AS."""

from sandbox.languages.base import LanguageRunner, Step

JAVASCRIPT = LanguageRunner(
    name="javascript",
    aliases=("js", "node", "nodejs"),
    source_name="main.js",
    binaries=("/usr/bin/node",),
    run=Step(argv=("/usr/bin/node", "main.js")),
    memory_rlimit="data",
    memory_markers=("heap out of memory", "Cannot allocate memory", "std::bad_alloc"),
    extra_nproc=16,
    stack_mb=8,  # V8 starts ~10 threads; each takes RLIMIT_STACK of RLIMIT_DATA
)
