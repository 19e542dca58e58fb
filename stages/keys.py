"""Sample keys: unique across the dataset, stable across runs, safe for webdataset.

webdataset splits a member name at the first dot of its base name to find the sample key,
so a key holds no dot; spaces and other punctuation are replaced too, and path parts that
could climb out of a folder ("..", a leading "/") are dropped.
"""
import hashlib
import re

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
CAPTION_EXTENSION = "txt"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def split_extension(name: str) -> tuple:
    """("dir/a.b.JPG") -> ("dir/a.b", "jpg"); the extension is the text after the last dot."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return name, ""
    stem, ext = name.rsplit(".", 1)
    return stem, ext.lower()


def is_image_name(name: str) -> bool:
    return split_extension(name)[1] in IMAGE_EXTENSIONS


def sample_names(name: str) -> frozenset:
    """The names that tie a sidecar to its image: the path without its last extension, and
    webdataset's sample key (the path up to the first dot of its base name). `sa_1.jpg` and
    `sa_1.json` share both; `a.b.jpg` claims `a.b.txt` and, as webdataset would, `a.json`."""
    directory, _, base = name.rpartition("/")
    webdataset_key = (directory + "/" if directory else "") + base.split(".", 1)[0]
    return frozenset((split_extension(name)[0], webdataset_key))


class SidecarTracker:
    """Finds the non-image files of an input that belong to no image (orphan sidecars).

    Files arrive in order; a non-image file waits until an image with a shared sample name
    claims it (before or after it). What is left at the end has no image and is reported.
    """

    def __init__(self):
        self.image_names = set()
        self.waiting = {}  # arrival number -> (name, payload)
        self.waiting_by_name = {}  # sample name -> [arrival numbers]
        self.arrivals = 0

    def add_image(self, name: str) -> None:
        for sample_name in sample_names(name):
            self.image_names.add(sample_name)
            for number in self.waiting_by_name.pop(sample_name, ()):
                self.waiting.pop(number, None)

    def add_other(self, name: str, payload=None) -> None:
        names = sample_names(name)
        if names & self.image_names:
            return
        self.arrivals += 1
        self.waiting[self.arrivals] = (name, payload)
        for sample_name in names:
            self.waiting_by_name.setdefault(sample_name, []).append(self.arrivals)

    def orphans(self) -> list:
        """(name, payload) of the files no image claimed, in arrival order."""
        return [self.waiting[number] for number in sorted(self.waiting)]


def is_unsafe_path(name: str) -> bool:
    """A member path that is absolute or climbs out of its archive."""
    return name.startswith("/") or ".." in name.replace("\\", "/").split("/")


def sanitise(stem: str) -> str:
    """Turn a member path without extension into key text: [A-Za-z0-9_-] parts joined by '/'."""
    parts = [p for p in stem.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(_UNSAFE.sub("_", p) for p in parts) or "_"


def name_bytes(name: str) -> bytes:
    r"""A name as the bytes it came from. A file name or tar member that is not valid UTF-8
    (b"caf\xe9.jpg", latin-1) reaches Python with each undecodable byte as a lone surrogate
    (PEP 383), which a plain encode refuses; a valid name gives its UTF-8 bytes, as before."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoder made (not from a file name): kept as is
        return name.encode("utf-8", "surrogatepass")


def printable_name(name: str) -> str:
    r"""A name as text any writer takes: valid UTF-8 unchanged, each byte that is not valid UTF-8
    written as `\xNN` (latin-1 b"caf\xe9.jpg" -> the 11 characters `caf\xe9.jpg`). A name that
    holds the text `\xe9` itself reads the same: `source` is for people; the key is unique."""
    return name_bytes(name).decode("utf-8", "backslashreplace")


def quoted_name(name: str) -> str:
    r"""A name quoted for an error text, in the form `source` writes it: bytes that are not UTF-8 as
    `\xNN` (not repr's `\udcNN`), and a newline or other unprintable character escaped, so that the
    error stays one line."""
    text = printable_name(name)
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + "'"


def short_hash(text: str) -> str:
    return hashlib.sha1(name_bytes(text)).hexdigest()[:8]


class UniqueNames:
    """Hands out names that are unique by construction: every candidate is checked, renames too.

    A wanted name already taken gets `-` + 8 hex digits of the thing's original name; if a
    crafted input already holds that name as well (`x-<hash of "x.png">.jpg` beside `x.jpg` and
    `x.png`), the hash is taken again over the original name and a counter, until one is free.
    The same listing gives the same names on every run.
    """

    def __init__(self):
        self.taken = set()

    def claim(self, wanted: str, original: str) -> str:
        name, attempt = wanted, 0
        while name in self.taken:
            name = f"{wanted}-{short_hash(original if attempt == 0 else f'{original}#{attempt}')}"
            attempt += 1
        self.taken.add(name)
        return name


class KeyMaker:
    """Makes the keys of one input: sanitised paths, made unique by a hash of the original name.

    `x.jpg` and `x.png`, or `a b.jpg` and `a_b.jpg`, would sanitise to one key; the second one
    seen gets `-` + 8 hex digits of its original path (see UniqueNames). The same member name
    seen twice is a duplicate, and `make` returns None for it.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.names = set()
        self.keys = UniqueNames()

    def make(self, name: str):
        if name in self.names:
            return None
        self.names.add(name)
        return self.keys.claim(f"{self.prefix}/{sanitise(split_extension(name)[0])}", name)
