"""Verifiers that live outside the package: they register by import path or by an entry point in a test."""

import time

from train.rewards.base import Verdict, Verifier


class Palindrome(Verifier):
    """1 when the answer reads the same backwards and equals the truth (a toy domain)."""

    name = "palindrome"

    def compare(self, final: str, truth: str) -> Verdict:
        ok = final == final[::-1] and final == truth
        return Verdict(float(ok), final, truth, "match" if ok else "mismatch")


class Sleeper(Verifier):
    """Hangs on the answer `hang` (like sympy on a pathological expression), raises on `raise`, else exact match."""

    name = "sleeper"

    def compare(self, final: str, truth: str) -> Verdict:
        if final == "hang":
            while True:
                time.sleep(0.1)
        if final == "raise":
            raise RuntimeError("verifier bug")
        return Verdict(float(final == truth), final, truth, "match" if final == truth else "mismatch")
