from django.urls import path

from notebooks import apis

nb = "notebooks/<uuid:notebook_id>/"
urlpatterns = [
    path("notebooks/", apis.NotebookListCreateApi.as_view(), name="notebook-list"),
    path(nb, apis.NotebookDetailApi.as_view(), name="notebook-detail"),
    path(f"{nb}sources/", apis.SourceListCreateApi.as_view(), name="source-list"),
    path(f"{nb}sources/<uuid:source_id>/", apis.SourceDetailApi.as_view(), name="source-detail"),
    path(f"{nb}sources/<uuid:source_id>/content/", apis.SourceContentApi.as_view(), name="source-content"),
    path(f"{nb}sources/<uuid:source_id>/file/", apis.SourceFileApi.as_view(), name="source-file"),
    path(f"{nb}search/", apis.SearchApi.as_view(), name="notebook-search"),
    path(f"{nb}overview/", apis.OverviewApi.as_view(), name="notebook-overview"),
    path(f"{nb}events/", apis.notebook_events, name="notebook-events"),
    path(f"{nb}questions/", apis.QuestionListCreateApi.as_view(), name="question-list"),
    path("questions/<uuid:question_id>/", apis.QuestionDetailApi.as_view(), name="question-detail"),
    path("questions/<uuid:question_id>/note/", apis.QuestionNoteApi.as_view(), name="question-note"),
]
