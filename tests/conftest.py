"""Fixtures shared by the tests: the website, built once per test session."""

import pytest

from tests.notebooks import build_chinese_site


@pytest.fixture(scope="session")
def site():
    """The full website (learner chapters and folded solutions), in English, with the
    Chinese one in its folder zh/ (as published: the language switcher's links resolve)."""
    return build_chinese_site("test-site")


@pytest.fixture(scope="session")
def student_site():
    """The website built without solutions (BOOK_EDITION=student), in both languages."""
    return build_chinese_site("test-student", BOOK_EDITION="student")

