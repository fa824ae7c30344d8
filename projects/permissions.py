"""Who may see and change what: a project belongs to a team, and a member's role decides."""

from django.db.models import QuerySet

from projects.models import Membership, Project, Role


def visible_projects(user) -> QuerySet:
    """Projects whose team the user belongs to; staff see every project."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(team__memberships__user=user)


def role_in(user, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_staff:
        return Role.OWNER
    membership = Membership.objects.filter(team_id=project.team_id, user=user).only("role").first()
    return membership.role if membership else None


def can_view(user, project: Project) -> bool:
    return role_in(user, project) is not None


def can_edit(user, project: Project) -> bool:
    """Owners and maintainers upload datasets and start or cancel runs; viewers only look."""
    return role_in(user, project) in (Role.OWNER, Role.MAINTAINER)
