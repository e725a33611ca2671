"""Methods beside ``__call__`` and ``setup``: builtin decorators that mean the same on
an NNX Module are kept; others get no fix."""

from __future__ import annotations

from conversion_helpers import convert


def test_a_property_stays_as_it_is_and_the_fields_it_reads_are_kept():
    fixed, messages = convert('''\
        import flax.linen as nn

        class Head(nn.Module):
            prefix: str = "h"
            width: int = 4

            @property
            def label(self):
                return f"{self.prefix}-{self.width}"

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.width)(x)
        ''')
    assert fixed is not None, messages
    assert "        self.prefix = prefix\n        self.width = width\n" in fixed
    assert "    @property\n    def label(self):\n        return f\"{self.prefix}-{self.width}\"\n" in fixed


def test_a_classmethod_gets_no_fix_as_it_may_build_the_class_with_its_linen_signature():
    fixed, messages = convert('''\
        import flax.linen as nn

        class Head(nn.Module):
            width: int = 4

            @classmethod
            def small(cls):
                return cls(width=2)

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.width)(x)
        ''')
    assert fixed is None
    assert "`small` builds the class, with its Linen signature" in messages["Head"]
