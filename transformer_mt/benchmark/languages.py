"""Sentences in languages other than English and French, written for the detection benchmark (what a
detector restricted to some languages does with the others), and short inputs cut from sentences."""
from __future__ import annotations

OTHERS = {
    "de": ["Ich habe heute keine Zeit.", "Wo ist der Bahnhof?", "Das Wetter ist schön.", "Mein Bruder wohnt in Berlin.",
           "Kannst du mir helfen?", "Wir gehen morgen ins Kino.", "Der Hund schläft unter dem Tisch.",
           "Ich trinke gern Kaffee am Morgen.", "Sie hat das Buch gestern gelesen.", "Es ist zu spät für uns.",
           "Guten Morgen, wie geht es dir?", "Die Kinder spielen im Garten.", "Warum bist du so müde?",
           "Ich verstehe das nicht.", "Das Essen war sehr gut."],
    "es": ["No tengo tiempo hoy.", "¿Dónde está la estación?", "Hace buen tiempo.", "Mi hermano vive en Madrid.",
           "¿Puedes ayudarme?", "Mañana vamos al cine.", "El perro duerme debajo de la mesa.",
           "Me gusta tomar café por la mañana.", "Ella leyó el libro ayer.", "Es demasiado tarde para nosotros.",
           "Buenos días, ¿cómo estás?", "Los niños juegan en el jardín.", "¿Por qué estás tan cansado?",
           "No lo entiendo.", "La comida estaba muy buena."],
    "it": ["Oggi non ho tempo.", "Dov'è la stazione?", "Fa bel tempo.", "Mio fratello abita a Roma.",
           "Puoi aiutarmi?", "Domani andiamo al cinema.", "Il cane dorme sotto il tavolo.",
           "Mi piace bere il caffè la mattina.", "Lei ha letto il libro ieri.", "È troppo tardi per noi.",
           "Buongiorno, come stai?", "I bambini giocano in giardino.", "Perché sei così stanco?",
           "Non lo capisco.", "Il pranzo era molto buono."],
    "pt": ["Hoje não tenho tempo.", "Onde fica a estação?", "O tempo está bom.", "O meu irmão mora em Lisboa.",
           "Você pode me ajudar?", "Amanhã vamos ao cinema.", "O cachorro dorme debaixo da mesa.",
           "Gosto de tomar café de manhã.", "Ela leu o livro ontem.", "É tarde demais para nós.",
           "Bom dia, como você está?", "As crianças brincam no jardim.", "Por que você está tão cansado?",
           "Eu não entendo isso.", "A comida estava muito boa."],
    "nl": ["Ik heb vandaag geen tijd.", "Waar is het station?", "Het is mooi weer.", "Mijn broer woont in Utrecht.",
           "Kun je me helpen?", "Morgen gaan we naar de bioscoop.", "De hond slaapt onder de tafel.",
           "Ik drink graag koffie in de ochtend.", "Ze heeft het boek gisteren gelezen.", "Het is te laat voor ons.",
           "Goedemorgen, hoe gaat het met je?", "De kinderen spelen in de tuin.", "Waarom ben je zo moe?",
           "Ik begrijp het niet.", "Het eten was erg lekker."],
}


def short_inputs(sentences: list[str], most_words: int = 5) -> list[str]:
    """The first 1 to `most_words` words of each sentence (edge punctuation dropped): what a chat
    message, a title or a button holds."""
    found = []
    for sentence in sentences:
        words = sentence.split()
        for n in range(1, min(most_words, len(words)) + 1):
            text = " ".join(words[:n]).strip(".,;:!?¿¡\"'«» ")
            if text:
                found.append(text)
    return found
