"""GET /auth/whoami."""

from __future__ import annotations

from fastapi import APIRouter, Request

from pivot_api.identity.schemas import WhoAmI

router = APIRouter(prefix="/auth", tags=["auth"])


# Its 401 (an unknown key) is documented with every keyed route's when keys are on.
@router.get("/whoami", response_model=WhoAmI)
async def whoami(request: Request) -> WhoAmI:
    """The key this request was made with: its name and scope. A client asks once after
    sign-in, to check the key and to offer only what it may do. Without a key it answers
    (name and scope null) rather than 401, so a page can learn that it must ask for one; a
    key that is not known is refused (401) as anywhere else."""
    if not request.app.state.settings.auth_enabled:
        return WhoAmI(auth_enabled=False, scope="admin")
    return WhoAmI(
        auth_enabled=True,
        name=getattr(request.state, "api_key_name", None),
        scope=getattr(request.state, "api_key_scope", None),
    )
