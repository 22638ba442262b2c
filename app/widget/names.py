"""Friendly names for visitors who gave none: an adjective and an animal ("Calm Otter"), the
same for a visitor on every screen and every day, because they come from the visitor's public
id alone (no column to fill, nothing to migrate)."""

import functools
import hashlib

# 64 of each: 4,096 names. Plain, kind words that read well together in any order.
ADJECTIVES = (
    "Amber", "Bold", "Brave", "Breezy", "Bright", "Calm", "Cheery", "Clever", "Cosy", "Curious",
    "Dapper", "Daring", "Eager", "Easy", "Fair", "Fancy", "Fearless", "Friendly", "Gentle",
    "Glad", "Golden", "Graceful", "Happy", "Hardy", "Honest", "Humble", "Jolly", "Keen", "Kind",
    "Lively", "Lucky", "Merry", "Mellow", "Mighty", "Modest", "Nimble", "Noble", "Patient",
    "Peaceful", "Playful", "Polite", "Proud", "Quick", "Quiet", "Rapid", "Ready", "Rosy", "Royal",
    "Sandy", "Sharp", "Shiny", "Silver", "Sleepy", "Smart", "Snowy", "Sunny", "Swift", "Tidy",
    "Trusty", "Warm", "Wise", "Witty", "Zesty", "Zippy",
)
ANIMALS = (
    "Albatross", "Alpaca", "Badger", "Beaver", "Bison", "Camel", "Cheetah", "Crane", "Deer",
    "Dolphin", "Duck", "Eagle", "Falcon", "Ferret", "Finch", "Fox", "Gazelle", "Gecko", "Giraffe",
    "Goose", "Hare", "Hedgehog", "Heron", "Horse", "Ibex", "Jaguar", "Koala", "Lark", "Lemur",
    "Leopard", "Lion", "Llama", "Lynx", "Magpie", "Marten", "Meerkat", "Mole", "Moose", "Otter",
    "Owl", "Panda", "Panther", "Parrot", "Pelican", "Penguin", "Puffin", "Quail", "Rabbit",
    "Raven", "Robin", "Salmon", "Seal", "Sparrow", "Squirrel", "Stork", "Swan", "Tiger",
    "Toucan", "Turtle", "Walrus", "Whale", "Wolf", "Wombat", "Zebra",
)


@functools.lru_cache(maxsize=4096)
def friendly_name(public_id: str) -> str:
    """The visitor's friendly name, e.g. "Calm Otter": a hash of the public id picks both words,
    so every process gives the same visitor the same name."""
    digest = hashlib.sha256(public_id.encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    adjective, animal = divmod(number % (len(ADJECTIVES) * len(ANIMALS)), len(ANIMALS))
    return f"{ADJECTIVES[adjective]} {ANIMALS[animal]}"
