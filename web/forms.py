from django import forms


class NotebookForm(forms.Form):
    title = forms.CharField(max_length=200, strip=True)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200, strip=True)
