"""Regenerate docs/features.md from the feature registry (churnlens._features_sql.FEATURES).

Run ``python docs/update_features.py``; ``tests/test_features.py`` fails while the page
and the code disagree.
"""

from __future__ import annotations

from pathlib import Path

from churnlens._features import features_document

if __name__ == "__main__":
    target = Path(__file__).with_name("features.md")
    target.write_text(features_document())
    print(f"wrote {target}")
