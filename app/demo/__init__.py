"""Demo data for `make run`: `seed.py` runs `accounts.py` (one account of each role) and then the
demo step of each module (`<module>.py`), in the order `app/modules.py` lists them."""
