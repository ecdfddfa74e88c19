"""Fetch and mend mmcv 2.1.0's sdist for Python >= 3.13 before it is built (tools/setup_env.sh).

``get_version()`` in its ``setup.py`` execs ``mmcv/version.py`` and then reads
``locals()['__version__']``; Python 3.13 (PEP 667) gives ``exec`` a snapshot of the
function's locals, so the name never appears there and the build stops with
``KeyError: '__version__'``. Reading it from an explicit namespace works on every Python.
``pip download`` already runs that ``setup.py`` (for the metadata), so on 3.13 the sdist is
fetched from the package index directly, its sha256 checked against the index's.

    python tools/patch_mmcv_sdist.py UNPACKED_SDIST_DIR
    python tools/patch_mmcv_sdist.py --download VERSION DEST_DIR
"""
import hashlib
import os
import os.path as osp
import re
import sys
import urllib.parse
import urllib.request

OLD = ("        exec(compile(f.read(), version_file, 'exec'))\n"
       "    return locals()['__version__']")
NEW = ("        namespace = {}\n"
       "        exec(compile(f.read(), version_file, 'exec'), namespace)\n"
       "    return namespace['__version__']")


def patch_setup_py(path: str) -> bool:
    """Patch ``path`` in place; True if it changed, False if it was already patched."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if NEW in text:
        return False
    if OLD not in text:
        raise SystemExit(f'{path}: get_version() has an unexpected form; this patch is for '
                         'mmcv 2.1.0 (see requirements/mminstall.txt)')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text.replace(OLD, NEW))
    return True


def download_sdist(version: str, dest: str) -> str:
    """Download ``mmcv-<version>.tar.gz`` from the simple index (``PIP_INDEX_URL`` or PyPI)."""
    index = os.environ.get('PIP_INDEX_URL', 'https://pypi.org/simple').rstrip('/')
    name = f'mmcv-{version}.tar.gz'
    with urllib.request.urlopen(f'{index}/mmcv/', timeout=60) as page:
        html = page.read().decode()
    match = re.search(r'href="([^"]*/' + re.escape(name) + r')#sha256=([0-9a-f]{64})"', html)
    if match is None:
        raise SystemExit(f'{name} is not listed on {index}/mmcv/')
    url, sha256 = match.groups()
    if url.startswith('/') or not re.match(r'https?://', url):
        url = urllib.parse.urljoin(f'{index}/mmcv/', url)
    path = osp.join(dest, name)
    with urllib.request.urlopen(url, timeout=300) as response, open(path, 'wb') as f:
        f.write(response.read())
    with open(path, 'rb') as f:
        if hashlib.sha256(f.read()).hexdigest() != sha256:
            os.remove(path)
            raise SystemExit(f'{name} from {url} does not match the index sha256 {sha256}')
    return path


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--download':
        print(f'  downloaded {download_sdist(sys.argv[2], sys.argv[3])}')
        sys.exit(0)
    if len(sys.argv) != 2:
        raise SystemExit('usage: ' + '\n       '.join(
            line.strip() for line in __doc__.strip().splitlines()[-2:]))
    changed = patch_setup_py(osp.join(sys.argv[1], 'setup.py'))
    print('  patched setup.py get_version() (Python 3.13 needs it; harmless before)' if changed
          else '  setup.py get_version() already patched')
