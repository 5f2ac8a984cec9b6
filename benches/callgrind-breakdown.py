#!/usr/bin/env python3
"""Exclusive instructions of a callgrind profile of skytrace's per-span path, by category.

Usage: benches/callgrind-breakdown.py FILE CALLS [TOP_LINES]
  FILE: a callgrind.out from benches/callgrind.sh (OUT=dir), e.g. span_skytrace_sampled.out
  CALLS: how many calls it counted (11000 for the span cases of callgrind.sh)
The categories are heuristics over the source file and function of each line (inlined code
keeps its own file): good to a few instructions, see docs/performance.md."""
import re, sys, collections

def parse(path):
    names = {'fl': {}, 'fn': {}, 'cfn': {}, 'cfl': {}}
    fl = fi = fn = None
    costs = collections.Counter()
    skip_next = False
    last_line = 0
    def name(kind, v):
        m = re.match(r'\((\d+)\)(?: (.*))?', v)
        if not m:
            return v
        table = names['fn' if kind in ('fn', 'cfn') else 'fl']
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), v)
    for raw in open(path):
        line = raw.rstrip('\n')
        if not line:
            continue
        if '=' in line and re.match(r'^[a-z]+=', line):
            k, v = line.split('=', 1)
            if k == 'fl':
                fl = fi = name('fl', v)
            elif k in ('fi', 'fe'):
                fi = name('fl', v)
            elif k == 'fn':
                fn = name('fn', v); fi = fl
            elif k in ('cfn',):
                name('fn', v)
            elif k in ('cfl', 'cfi'):
                name('fl', v)
            elif k == 'calls':
                skip_next = True
            continue
        if line[0].isdigit() or line[0] in '+-*':
            parts = line.split()
            pos = parts[0]
            if pos.startswith('+'): ln = last_line + int(pos[1:])
            elif pos.startswith('-'): ln = last_line - int(pos[1:])
            elif pos == '*': ln = last_line
            else: ln = int(pos)
            last_line = ln
            if skip_next:
                skip_next = False
                continue
            c = int(parts[1]) if len(parts) > 1 else 0
            costs[(fn, fi, ln)] += c
    return costs

def category(fn, fi, ln, src):
    f = fi or ''
    text = src(f, ln)
    if 'minstant' in f or f.endswith('/time.rs') or 'rdtsc' in f:
        return 'clock read (minstant TSC + conversion to ms)'
    if 'sys/sync/mutex' in f or 'futex' in f or 'poison' in f or 'panicking.rs' in f or 'sync/mutex.rs' in f:
        return 'segment Mutex lock/unlock (+ poison check)'
    if 'lock()' in text or 'fn lock' in text:
        return 'segment Mutex lock/unlock (+ poison check)'
    if 'drop_in_place<core::option::Option<skytrace::context::Handle>>' in fn or 'alloc/src/sync.rs' in f:
        return 'Arc<ActiveSegment> refcounts + Option<Handle> drop glue'
    if 'atomic.rs' in f and ('start_span' in fn or 'end_span' in fn):
        return 'segment Mutex lock/unlock (+ poison check)'
    if 'atomic.rs' in f:
        return 'Arc<ActiveSegment> refcounts + Option<Handle> drop glue'
    if 'malloc' in f or 'raw_vec' in f or 'finish_grow' in fn or 'alloc::' in fn and 'grow' in fn:
        return 'span list growth (Vec realloc, amortised)'
    if 'with_current' in fn or 'replace_current' in fn or 'thread/local' in f:
        return 'thread-local current-span handle (with_current/replace_current, Option<Handle> moves)'
    if f.endswith('segment.rs') or ('vec/mod.rs' in f and 'start_span' in fn):
        return 'SpanRecord construction + push'
    if 'start_span' in fn or 'end_span' in fn:
        return 'start_span/end_span bookkeeping (checks, ids, prologue)'
    return 'Span/EnteredSpan glue in the traced fn (Option<Handle> moves, branches, prologue)'

_src = {}
def src(f, ln):
    if f not in _src:
        try: _src[f] = open(f).read().split('\n')
        except Exception: _src[f] = []
    lines = _src[f]
    return lines[ln-1] if 0 < ln <= len(lines) else ''

path, calls = sys.argv[1], float(sys.argv[2])
costs = parse(path)
cats = collections.Counter()
total = 0
for (fn, fi, ln), c in costs.items():
    cats[category(fn or '', fi or '', ln, src)] += c
    total += c
print(f'total {total:,} Ir = {total/calls:.0f} Ir per call')
for k, v in cats.most_common():
    print(f'  {v/calls:7.0f}  {100*v/total:5.1f}%  {k}')
if len(sys.argv) > 3:
    for (fn, fi, ln), c in sorted(costs.items(), key=lambda x: -x[1])[:int(sys.argv[3])]:
        print(f'{c/calls:7.1f} {fn} {fi}:{ln}  {src(fi or "", ln).strip()[:80]}')
