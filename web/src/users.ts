import { refreshCard, showAdapterCard, useAdapter } from "./adapter-card.ts";
import { type DemoUser, userFromToken } from "./config.ts";
import { byId, describe } from "./dom.ts";
import { state, status } from "./state.ts";

/** The user picker: demo users from the local config, or a pasted token on a deployed page. */
export function setUpUsers(): void {
  const select = byId<HTMLSelectElement>("user-select");
  const fill = () => {
    select.replaceChildren(
      ...state.users.map(
        (u) => new Option(`${u.id}${u.source === "random" ? " (random adapter)" : ""}`, u.id),
      ),
    );
    if (state.user) select.value = state.user.id;
  };
  fill();
  select.addEventListener("change", () => {
    const user = state.users.find((u) => u.id === select.value);
    if (user) void selectUser(user);
  });
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      const user = userFromToken(byId<HTMLInputElement>("token-input").value.trim());
      state.users = [...state.users.filter((u) => u.id !== user.id), user];
      fill();
      void selectUser(user);
    } catch (error) {
      showAdapterCard([["Token", describe(error)]]);
    }
  });
}

export async function selectUser(user: DemoUser): Promise<void> {
  state.user = user;
  state.adapter = null;
  status.user = user.id;
  byId("personal-title").textContent = `${user.id}'s model`;
  showAdapterCard([["Adapter", "loading…"]]);
  if (state.model) await useAdapter();
  else await refreshCard();
}
