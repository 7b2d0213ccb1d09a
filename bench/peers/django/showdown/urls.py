from django.urls import path

from . import views

urlpatterns = [
    path("healthz", views.healthz),
    path("plaintext", views.plaintext),
    path("json", views.hello_json),
    path("db", views.single_query),
    path("queries", views.multiple_queries),
    path("updates", views.updates),
    path("fortunes", views.fortunes),
    path("api/todos", views.todos),
    path("api/todos/<int:tid>", views.todo_item),
    path("work/hash", views.work_hash),
]
