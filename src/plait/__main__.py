from __future__ import annotations

from plait.entry import main

if __name__ == "__main__":
    main()
