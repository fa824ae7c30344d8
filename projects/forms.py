"""Forms of the project pages: a new project and a dataset upload.

The forms only check the shape of the input. services.create_project and
services.create_dataset validate the rest, and the views attach their
errors to the fields named in them.
"""

from django import forms
from django.utils.translation import gettext_lazy as _

from projects.models import Dataset, DatasetFormat, Project, Task
from projects.services import editable_teams


class ProjectForm(forms.Form):
    team = forms.ModelChoiceField(label=_("Team"), queryset=None, empty_label=None)
    name = forms.CharField(label=_("Name"), max_length=Project._meta.get_field("name").max_length)
    description = forms.CharField(label=_("Description"), required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = editable_teams(user).order_by("name")


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_("CSV with a header row, NPZ with arrays X and y, or a ZIP with one folder of images per class."),
    )
    name = forms.CharField(label=_("Name"), required=False, max_length=Dataset._meta.get_field("name").max_length,
                           help_text=_("Defaults to the file name without its extension."))
    format = forms.ChoiceField(label=_("Format"), required=False,
                               choices=[("", _("Automatic, from the file extension")), *DatasetFormat.choices])
    task = forms.ChoiceField(label=_("Task"), choices=Task.choices, initial=Task.CLASSIFICATION)
    target_column = forms.CharField(label=_("Target column"), required=False,
                                    max_length=Dataset._meta.get_field("target_column").max_length,
                                    help_text=_("CSV only: the column to predict. Defaults to the last column."))
