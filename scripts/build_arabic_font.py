"""Build harness/assets/NotoSansArabic-Arabic.woff2: Noto Sans Arabic Regular subset to the Arabic block.

Where it comes from: the Debian package fonts-noto-core (bookworm, 20201225-1), file
usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf, licensed under the SIL Open Font License 1.1.
How to rebuild it (fontTools and brotli are needed here only, never at run time):

    apt-get download fonts-noto-core && dpkg-deb -x fonts-noto-core_*.deb noto
    pip install fonttools brotli
    python scripts/build_arabic_font.py noto/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf

It keeps U+0600-06FF (the Arabic block) with the joining marks ZWNJ and ZWJ and every OpenType layout feature
(Arabic letters take their joined forms through GSUB), and writes the licence, with the font's own copyright
line, beside it as OFL-NotoSansArabic.txt.
"""
from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

ASSETS = Path(__file__).resolve().parent.parent / "harness" / "assets"
UNICODES = list(range(0x0600, 0x0700)) + [0x200C, 0x200D]


def main(source: str) -> None:
    """Subset the font to the Arabic block as WOFF2 and write its licence beside it."""
    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    font = TTFont(source)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=UNICODES)
    subsetter.subset(font)
    out = ASSETS / "NotoSansArabic-Arabic.woff2"
    font.flavor = "woff2"
    font.save(out)
    copyright_line = TTFont(source)["name"].getDebugName(0) or "Copyright The Noto Project Authors"
    tifinagh = (ASSETS / "OFL-NotoSansTifinagh.txt").read_text(encoding="utf-8")
    licence = tifinagh[tifinagh.index("This Font Software"):]
    (ASSETS / "OFL-NotoSansArabic.txt").write_text(f"{copyright_line}\n\n{licence}", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size:,} bytes) and its licence")


if __name__ == "__main__":
    main(sys.argv[1])
