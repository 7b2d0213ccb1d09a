"""The showdown's tables (made by the tool: unmanaged here). PostgreSQL folds the unquoted names
of its CREATE TABLE to lower case: World is world, randomNumber is randomnumber."""

from django.db import models


class World(models.Model):
    id = models.IntegerField(primary_key=True)
    randomnumber = models.IntegerField()

    class Meta:
        db_table = "world"
        managed = False


class Fortune(models.Model):
    id = models.IntegerField(primary_key=True)
    message = models.TextField()

    class Meta:
        db_table = "fortune"
        managed = False


class Todo(models.Model):
    title = models.TextField()
    done = models.IntegerField()  # 0 or 1 in the table, a JSON boolean on the wire

    class Meta:
        db_table = "todo"
        managed = False

    def as_json(self):
        return {"id": self.id, "title": self.title, "done": bool(self.done)}
