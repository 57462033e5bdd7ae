"""`tokentop fleet`: the article's GPU x provider table filled from one laptop through SkyPilot.

spec      the fleet file (TOML) -> Fleet, Cell; GPU and provider names mapped to SkyPilot's
plan      one SkyPilot task per cell (checked by SkyPilot's own code), prices, the cost of the time cap
launcher  the one boundary to SkyPilot (Launcher; SkyLauncher is the real one)
runner    launch, follow, pull, tear down (follow_fleet)

No Textual here; SkyPilot is imported only where it is called (the `fleet` extra).
"""
