"""Planning: a story, a screenplay or an idea into an editable film spec (plan, review, render)."""
