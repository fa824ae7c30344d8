"""Template tags of studies: the project page's study table, and categorical choices as text."""

import json

from django import template

register = template.Library()


@register.inclusion_tag("tuning/_project_studies.html", takes_context=True)
def project_studies(context):
    """Render the Studies section of the project page from its `project` and `can_edit` context."""
    from tuning.views import project_studies as studies_of, study_state_labels

    project = context["project"]
    return {
        "project": project,
        "studies": studies_of(project),
        "can_edit": context.get("can_edit", False),
        "study_state_labels": study_state_labels(),
    }


@register.filter
def choices_text(choices: list) -> str:
    """Write categorical choices as they read in JSON: 32, adam, true, null."""
    return ", ".join(value if isinstance(value, str) else json.dumps(value) for value in choices or [])
