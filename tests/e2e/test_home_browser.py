"""The home page as a first-time visitor sees it, on a desktop and on a phone."""

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible


def test_the_home_page_shows_the_product_beside_its_words_and_stacks_on_a_phone(page):
    page.goto("/")
    picture = page.get_by_role("img", name="The shared inbox with a conversation open")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.complete && img.naturalWidth > 0")  # the SVG loaded
    heading = page.get_by_role("heading", level=1)
    # Side by side on a desktop: the picture starts right of the words.
    assert picture.bounding_box()["x"] > heading.bounding_box()["x"] + heading.bounding_box()["width"] - 1
    assert_accessible(page)

    page.set_viewport_size({"width": 375, "height": 740})
    # Stacked on a phone: below the words, within the screen's width.
    box = picture.bounding_box()
    assert box["y"] > heading.bounding_box()["y"] and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing sideways
    assert_accessible(page)
