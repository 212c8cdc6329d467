"""Seeded mutations of text, binary files, databases, image lists and flag lists.

Each mutator takes ``(data, rng)`` (``random.Random``) and returns the mutated data; the
tables map a family name to its mutators so a run's counts can be reported by family.
"""

import re

# -- text (prototxt) ---------------------------------------------------------
EXTREMES = ["1e30", "-1", "0", "2147483648", "4294967296", "-2147483649", "nan", "inf",
            "-inf", "1e-45", "99999999999999999999", "0.5", "-0"]
BAD_ENUMS = ["BOGUS", "MAXX", "SUM", "12", "\"MAX\"", "TRAIN", "gaussian"]
UNKNOWN_FIELDS = ["frobnicate: 3", "kernel_sz: 3", "layers_count: 1", "num_outputs: 10",
                  "bogus_param { a: 1 }"]


def _number_spans(text):
    return [m.span() for m in re.finditer(r"(?<=: )-?[0-9][0-9.eE+-]*", text)]


def truncate_text(text, rng):
    return text[: rng.randrange(0, max(len(text), 1))]


def drop_brace(text, rng):
    spots = [i for i, c in enumerate(text) if c in "{}"]
    if not spots:
        return text + "}"
    i = rng.choice(spots)
    return text[:i] + text[i + 1:]


def extra_brace(text, rng):
    i = rng.randrange(0, len(text) + 1)
    return text[:i] + rng.choice(["{", "}", " } ", " { "]) + text[i:]


def unknown_field(text, rng):
    spots = [m.end() for m in re.finditer(r"\{", text)] or [0]
    i = rng.choice(spots)
    return text[:i] + " " + rng.choice(UNKNOWN_FIELDS) + " " + text[i:]


def extreme_number(text, rng):
    spans = _number_spans(text)
    if not spans:
        return text
    a, b = rng.choice(spans)
    return text[:a] + rng.choice(EXTREMES) + text[b:]


def bad_enum(text, rng):
    spans = [m.span(1) for m in re.finditer(r"(?:pool|phase|operation|norm_region|"
                                            r"snapshot_format|lr_policy|type|engine):"
                                            r" *(\"?[A-Za-z_]+\"?)", text)]
    if not spans:
        return text
    a, b = rng.choice(spans)
    return text[:a] + rng.choice(BAD_ENUMS) + text[b:]


def wrong_type(text, rng):
    spans = _number_spans(text) + [m.span(1) for m in re.finditer(r": (\"[^\"]*\")", text)]
    if not spans:
        return text
    a, b = rng.choice(spans)
    return text[:a] + rng.choice(["\"3\"", "true", "{ }", "[1, 2]", "three", "3.7",
                                  "0x7fffffff"]) + text[b:]


def huge_repeated(text, rng):
    spans = [m.span() for m in re.finditer(r"dim: *[0-9]+", text)]
    if not spans:
        return text + " bottom: \"x\"" * 2000
    a, b = rng.choice(spans)
    return text[:a] + " ".join(["dim: 2"] * rng.choice([40, 1000, 5000])) + text[b:]


def deep_nesting(text, rng):
    depth = rng.choice([60, 200, 2000])
    i = rng.choice([m.end() for m in re.finditer(r"\{", text)] or [0])
    return text[:i] + " a {" * depth + " }" * depth + text[i:]


def swap_lines(text, rng):
    lines = text.splitlines()
    if len(lines) < 2:
        return text
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def delete_line(text, rng):
    lines = text.splitlines()
    if not lines:
        return text
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def rename_blob(text, rng):
    spans = [m.span(1) for m in re.finditer(r"(?:bottom|top): *\"([^\"]*)\"", text)]
    if not spans:
        return text
    a, b = rng.choice(spans)
    return text[:a] + rng.choice(["nowhere", "data", "loss", "", "conv1"]) + text[b:]


def non_utf8(text, rng):
    i = rng.randrange(0, len(text) + 1)
    return text[:i] + "\udcff\x00\x07" + text[i:]


TEXT_MUTATORS = [truncate_text, drop_brace, extra_brace, unknown_field, extreme_number,
                 extreme_number, bad_enum, wrong_type, huge_repeated, deep_nesting,
                 swap_lines, delete_line, rename_blob, non_utf8]


def mutate_text(text, rng, rounds=None):
    for _ in range(rounds or rng.choice([1, 1, 1, 2, 3])):
        text = rng.choice(TEXT_MUTATORS)(text, rng)
    return text


# -- binary files ------------------------------------------------------------
def truncate_bytes(data, rng):
    return data[: rng.randrange(0, max(len(data), 1))]


def flip_bits(data, rng):
    buf = bytearray(data)
    for _ in range(rng.choice([1, 4, 32, 256])):
        if buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def zero_block(data, rng):
    if not data:
        return data
    a = rng.randrange(len(data))
    n = rng.choice([8, 64, 4096])
    return data[:a] + bytes(min(n, len(data) - a)) + data[a + n:]


def splice_garbage(data, rng):
    a = rng.randrange(len(data) + 1)
    junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 16, 300])))
    return data[:a] + junk + data[a:]


BINARY_MUTATORS = [truncate_bytes, flip_bits, flip_bits, zero_block, splice_garbage]


def mutate_bytes(data, rng):
    return rng.choice(BINARY_MUTATORS)(data, rng)
