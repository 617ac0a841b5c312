"""C++ (g++ -O2, C++17), compiled inside the sandbox under ``Limits.compile_time_s``."""

from sandbox.languages.base import LanguageRunner, Step

CPP = LanguageRunner(
    name="cpp",
    aliases=("c++", "cxx", "cpp17"),
    source_name="main.cpp",
    binaries=("/usr/bin/g++",),
    compile=Step(argv=("/usr/bin/g++", "-std=gnu++17", "-O2", "-pipe", "-o", "main", "main.cpp")),
    run=Step(argv=("./main",)),
    memory_markers=("std::bad_alloc", "Cannot allocate memory"),
    extra_nproc=8,
    stack_mb=256,  # deep recursion (DFS) is common in contest C++
)
