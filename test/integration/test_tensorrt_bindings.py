"""Our TensorRT code against the real TensorRT Python bindings of 10.3, a current 10.x and 11.x.

No GPU and no TensorRT runtime are needed: the ``tensorrt-cu1X-bindings`` wheels on PyPI hold
the real pybind11 module (``tensorrt_bindings/tensorrt.so``, ~5 MB); only the libnvinfer wheels
behind them are download stubs. Every class, method, property, enum member and keyword argument
the module registers is a NUL-terminated string literal in that file. The linker merges a short
literal into the tail of a longer one (``precision`` may live inside ``reset_precision``), so
every suffix of every string counts as present. The wheel's ``__init__.py`` adds a few
pure-Python helpers (``nptype``, ``volume``); its top-level names count too.

Our TensorRT files are parsed with :mod:`ast`. Every attribute reached from the ``tensorrt``
module (``trt.X``, and attributes of values computed from it: ``builder = trt.Builder(...)``,
``config = builder.create_builder_config()``, ...) and every keyword passed to such a call must
exist in each version, unless it sits in the body of ``if weak_typing_supported(trt)...:``
(TensorRT < 11 only; then it must exist in every 10.x checked).

The wheels are downloaded once with ``pip download --no-deps`` into pytest's cache directory
(``.pytest_cache/d/tensorrt_bindings``); without network access the test skips.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: (pip requirement, TensorRT major version)
BINDINGS = (
    ('tensorrt-cu12-bindings==10.3.0', 10),         # JetPack 6.x
    ('tensorrt-cu12-bindings==10.16.1.11', 10),     # newest 10.x on PyPI (2026-12)
    ('tensorrt-cu13-bindings==11.4.0.106', 11),
)
#: the version guard the scanner recognises (defined in tensorrt_build)
GUARD = 'weak_typing_supported'
#: calls whose result's first element is the tensorrt module
TRT_IMPORTERS = ('import_tensorrt',)


def tensorrt_source_files() -> list[str]:
    """Our files that touch the TensorRT Python API."""
    out = []
    for rel in ('urcdc_depth_ros/inference', 'training'):
        for name in sorted(os.listdir(os.path.join(ROOT, rel))):
            path = os.path.join(ROOT, rel, name)
            if name.endswith('.py'):
                text = open(path, encoding='utf-8').read()
                if 'import tensorrt' in text or 'import_tensorrt(' in text:
                    out.append(path)
    return out


# ----------------------------------------------------------------------------- bindings
def _download(requirement: str, cache_dir: str) -> str:
    """Path of the wheel for ``requirement`` (downloaded into ``cache_dir`` once)."""
    name, version = requirement.split('==')
    stem = name.replace('-', '_') + '-' + version + '-'
    found = [f for f in os.listdir(cache_dir) if f.startswith(stem) and f.endswith('.whl')]
    if not found:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
               '--python-version', '3.11', '--platform', 'manylinux_2_28_x86_64',
               '--platform', 'manylinux_2_17_x86_64', '-d', cache_dir, '-q', requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        found = [f for f in os.listdir(cache_dir) if f.startswith(stem) and f.endswith('.whl')]
        if proc.returncode != 0 or not found:
            offline = re.search(r'connection|network|resolve|timed out|max retries|'
                                r'could not fetch', proc.stderr, re.IGNORECASE)
            if offline:
                pytest.skip(f'cannot download {requirement} (offline): {proc.stderr[-300:]}')
            pytest.fail(f'pip download {requirement} failed: {proc.stderr[-600:]}')
    return os.path.join(cache_dir, found[0])


def registered_names(so_bytes: bytes) -> set[str]:
    """Every identifier that is a suffix of a NUL-terminated string in a shared object."""
    names = set()
    for m in re.finditer(rb'\x00([\x21-\x7e]{2,200})(?=\x00)', so_bytes):
        text = m.group(1).decode('ascii')
        for i in range(len(text) - 1):
            tail = text[i:]
            if tail.isidentifier():
                names.add(tail)
    return names


def python_names(source: str) -> set[str]:
    """Top-level functions, classes and assigned names of the bindings' ``__init__.py``."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


@pytest.fixture(scope='module')
def bindings(request):
    """{requirement: (major, names)} for every entry of BINDINGS."""
    cache_dir = str(request.config.cache.mkdir('tensorrt_bindings'))
    out = {}
    for requirement, major in BINDINGS:
        with zipfile.ZipFile(_download(requirement, cache_dir)) as whl:
            so = [n for n in whl.namelist() if n.endswith('.so') and 'tensorrt' in n]
            assert so, f'{requirement} holds no tensorrt extension module: {whl.namelist()}'
            names = registered_names(whl.read(so[0]))
            for init in (n for n in whl.namelist() if n.endswith('bindings/__init__.py')):
                names |= python_names(whl.read(init).decode('utf-8'))
            out[requirement] = (major, names)
    return out


# ----------------------------------------------------------------------------- our usage
def _root(node: ast.AST) -> str | None:
    """The base of an attribute/call/subscript chain: ``'x'`` or ``'self.x'``."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == 'self':
            return f'self.{node.attr}'
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == 'self':
        return f'self.{node.attr}'
    return None


def _tainted_names(tree: ast.AST) -> set[str]:
    """Names holding the tensorrt module or values computed from it (fixed point)."""
    tainted = {'trt'}
    changed = True
    while changed:
        changed = False
        for node in ast.walk(tree):
            pairs = []
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs += list(zip(target.elts, node.value.elts))
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Call) \
                            and getattr(node.value.func, 'id', getattr(
                                node.value.func, 'attr', None)) in TRT_IMPORTERS:
                        name = _target_name(target.elts[0])
                        if name and name not in tainted:
                            tainted.add(name)
                            changed = True
                    else:
                        pairs.append((target, node.value))
            for target, value in pairs:
                name = _target_name(target)
                if name and name not in tainted and _root(value) in tainted:
                    tainted.add(name)
                    changed = True
    return tainted


def _is_guard(test: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, 'id', getattr(n.func, 'attr', None))
               == GUARD for n in ast.walk(test))


def tensorrt_usages(source: str) -> list[tuple[str, int, bool]]:
    """``(name, line, guarded)`` for every TensorRT attribute / keyword ``source`` uses."""
    tree = ast.parse(source)
    tainted = _tainted_names(tree)
    guarded_ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_guard(node.test):
            for stmt in node.body:
                guarded_ids.update(id(n) for n in ast.walk(stmt))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _root(node.value) in tainted \
                and not node.attr.startswith('__'):
            if not (isinstance(node.value, ast.Name) and node.value.id == 'self'):
                out.append((node.attr, node.lineno, id(node) in guarded_ids))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and _root(node.func) in tainted:
            out += [(k.arg, node.lineno, id(node) in guarded_ids)
                    for k in node.keywords if k.arg]
    return out


def missing_names(source: str, major: int, names: set[str]) -> list[str]:
    """``'name (line N)'`` for each usage absent from a TensorRT ``major`` module's names."""
    return sorted({f'{name} (line {line})' for name, line, guarded in tensorrt_usages(source)
                   if name not in names and not (guarded and major >= 11)})


# ----------------------------------------------------------------------------- tests
def test_the_bindings_register_what_the_release_notes_say(bindings):
    by_major = {}
    for major, names in bindings.values():
        by_major.setdefault(major, []).append(names)
    for names in by_major[10]:
        assert {'STRONGLY_TYPED', 'FP16', 'OBEY_PRECISION_CONSTRAINTS', 'set_output_type',
                'IInt8EntropyCalibrator2', 'Builder', 'OnnxParser'} <= names
    for names in by_major[11]:
        assert {'STRONGLY_TYPED', 'Builder', 'OnnxParser', 'set_flag'} <= names
        assert not {'FP16', 'OBEY_PRECISION_CONSTRAINTS', 'set_output_type',
                    'IInt8EntropyCalibrator2', 'int8_calibrator'} & names


def test_the_scanner_flags_an_unguarded_weak_typing_flag_only_on_11(bindings):
    snippet = textwrap.dedent('''
        def build(trt):
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
            config = builder.create_builder_config()
            config.set_flag(trt.BuilderFlag.FP16)
            if weak_typing_supported(trt):
                config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    ''')
    usages = {name for name, _, _ in tensorrt_usages(snippet)}
    assert {'Builder', 'create_builder_config', 'set_flag', 'FP16',
            'OBEY_PRECISION_CONSTRAINTS', 'WARNING'} <= usages
    for major, names in bindings.values():
        missing = missing_names(snippet, major, names)
        assert missing == ([] if major == 10 else ['FP16 (line 5)'])


@pytest.mark.parametrize('requirement', [b[0] for b in BINDINGS])
def test_our_tensorrt_code_uses_only_names_this_version_registers(bindings, requirement):
    major, names = bindings[requirement]
    files = tensorrt_source_files()
    assert any(f.endswith('tensorrt_build.py') for f in files)
    assert any(f.endswith('tensorrt_backend.py') for f in files)
    problems, seen = {}, 0
    for path in files:
        source = open(path, encoding='utf-8').read()
        seen += len(tensorrt_usages(source))
        missing = missing_names(source, major, names)
        if missing:
            problems[os.path.relpath(path, ROOT)] = missing
    assert seen >= 40, f'the scanner found only {seen} TensorRT usages; is it still working?'
    assert not problems, f'{requirement} lacks names our code uses: {problems}'
