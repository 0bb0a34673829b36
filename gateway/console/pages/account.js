// The signed-in user's own password: the current one is required; the user's other console sessions end.
import { api, session } from "../api.js";
import { ErrorMessage, Field, html, useState } from "../ui.js";

export function ChangePassword() {
  const [errors, setErrors] = useState({});
  const [result, setResult] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    if (form.get("new_password") !== form.get("repeat")) {
      setErrors({ repeat: ["does not match the new password"] });
      setResult(null);
      return;
    }
    try {
      await api("POST", "/session/password",
        { current_password: form.get("current_password"), new_password: form.get("new_password") });
      event.target.reset();
      setErrors({});
      setResult({ message: "Password changed. Your other sessions have ended." });
    } catch (error) {
      setErrors(error.details);
      setResult(error);
    }
  };
  return html`<section class="password"><h1>Change your password</h1>
    <p>Signed in as ${session.user.name}.</p>
    <form onSubmit=${submit}>
      <${Field} label="Current password" name="current_password" errors=${errors}>
        <input name="current_password" type="password" autocomplete="current-password" required /><//>
      <${Field} label="New password" name="new_password" errors=${errors} hint="8 characters or more">
        <input name="new_password" type="password" autocomplete="new-password" required /><//>
      <${Field} label="New password again" name="repeat" errors=${errors}>
        <input name="repeat" type="password" autocomplete="new-password" required /><//>
      ${result instanceof Error ? html`<${ErrorMessage} error=${result} />`
        : result && html`<p class="ok" role="status">${result.message}</p>`}
      <button class="primary" type="submit">Change password</button>
    </form>
  </section>`;
}
