"""The chat templates of training: the compiler's table (one definition for training and serving)."""

from vilms.compiler.chat_templates import TEMPLATES, ChatTemplate, get_template

__all__ = ["TEMPLATES", "ChatTemplate", "get_template"]
