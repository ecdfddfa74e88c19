"""No Python file in dmt_mm/ over 400 lines (CONTRIBUTING.md): print the offenders, exit 1.

    python tools/misc/check_file_lengths.py [--limit 400] [FOLDER ...]
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def too_long(folders, limit):
    out = []
    for folder in folders:
        for path in sorted(Path(folder).rglob('*.py')):
            lines = len(path.read_text().splitlines())
            if lines > limit:
                out.append((path, lines))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folders', nargs='*', default=[str(REPO / 'dmt_mm')])
    parser.add_argument('--limit', type=int, default=400)
    args = parser.parse_args(argv)
    offenders = too_long(args.folders, args.limit)
    for path, lines in offenders:
        print(f'{path}: {lines} lines (limit {args.limit}): split it by concern')
    return 1 if offenders else 0


if __name__ == '__main__':
    sys.exit(main())
